/* The command line as sigma(1) CONVENTIONS describes it, written once for
 * every tool: the common options, one usage error line for a bad option,
 * and the check that an option belongs to the subcommand it was given to. */
#include "base/base.h"

#include <stdlib.h>
#include <string.h>

static const struct option *longopts_seen;   /* the tool's table, for names */
#define MAX_SEEN 64
static int seen[MAX_SEEN];                   /* the options given, each once */
static int n_seen;

/* The length of an option's name in "name" or "name=value". */
static int name_len(const char *s) { return (int)strcspn(s, "="); }

/* The long option spelled exactly `s` (up to '='), or NULL. */
static const struct option *long_exact(const struct option *lo, const char *s)
{
    int n = name_len(s);
    for (; lo->name; lo++)
        if ((int)strlen(lo->name) == n && !strncmp(lo->name, s, (size_t)n)) return lo;
    return NULL;
}

/* How many long options `s` (up to '=') abbreviates. */
static int long_prefixes(const struct option *lo, const char *s)
{
    int n = name_len(s), k = 0;
    for (; lo->name; lo++) k += !strncmp(lo->name, s, (size_t)n);
    return k;
}

/* getopt_long's '?': argv[optind - 1] is the offending word for a long
 * option; for a short one optopt is the letter. */
static SG_NORETURN void bad_option(char **argv, const struct option *lo)
{
    const char *arg = argv[optind - 1];
    if (!strncmp(arg, "--", 2)) {
        const char *s = arg + 2;
        const struct option *o = long_exact(lo, s);
        if (optopt && o && o->val == optopt) usage_error("option '--%.*s' takes no argument", name_len(s), s);
        if (!optopt)
            usage_error("%s option '--%.*s'", long_prefixes(lo, s) > 1 ? "ambiguous" : "unknown", name_len(s), s);
    }
    usage_error("unknown option '-%c'", optopt);
}

/* The spelling of option `val` in messages: its long name, else its letter. */
static const char *option_name(int val, char buf[4])
{
    for (const struct option *o = longopts_seen; o && o->name; o++)
        if (o->val == val) return o->name;
    buf[0] = '-', buf[1] = (char)val, buf[2] = 0;
    return buf;
}

static SG_NORETURN void missing_argument(char **argv)
{
    char buf[4];
    const char *arg = argv[optind - 1];
    if (!strncmp(arg, "--", 2)) usage_error("option '%s' needs an argument", arg);
    const char *name = option_name(optopt, buf);
    usage_error("option '-%c' (--%s) needs an argument", optopt, name);
}

int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts, void (*help)(FILE *out))
{
    static char opts[64];
    /* ':' first: a missing argument is told apart from an unknown option */
    if (snprintf(opts, sizeof opts, ":%sqvh", shortopts) >= (int)sizeof opts) BUG("too many short options");
    longopts_seen = longopts;
    opterr = 0;
    for (;;) {
        int c = getopt_long(argc, argv, opts, longopts, NULL);
        switch (c) {
        case 'q': sg_quiet = 1; continue;
        case 'v': sg_verbose = 1; continue;
        case 'h': help(stdout); exit(fflush(stdout) ? 1 : 0);
        case CLI_VERSION: printf("%s %s\n", sg_prog, SIGMA_VERSION); exit(fflush(stdout) ? 1 : 0);
        case '?': bad_option(argv, longopts);
        case ':': missing_argument(argv);
        case -1: return -1;
        }
        int k = 0;
        while (k < n_seen && seen[k] != c) k++;
        if (k == n_seen && n_seen < MAX_SEEN) seen[n_seen++] = c;
        return c;
    }
}

void cli_help_end(FILE *out)
{
    fprintf(out,
            "  -q, --quiet              no progress or summary on standard error\n"
            "  -v, --verbose            more messages\n"
            "  -h, --help               this help\n"
            "      --version            the version\n"
            "\n"
            "See %s(1).\n",
            sg_prog);
}

/* Whether the space-separated `list` holds the word `w`. */
static int has_word(const char *list, const char *w)
{
    size_t n = strlen(w);
    for (const char *p = list; (p = strstr(p, w)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || !p[n])) return 1;
    return 0;
}

void cli_check_command(const CliCommand *cmd, const CliCommand *all, size_t n)
{
    for (int i = 0; i < n_seen; i++) {
        char buf[4];
        const char *name = option_name(seen[i], buf);
        if (has_word(cmd->options, name)) continue;
        char *owners = NULL;
        size_t k = 0, n_owners = 0;
        for (size_t j = 0; j < n; j++) n_owners += has_word(all[j].options, name);
        if (!n_owners) BUG("--%s belongs to no subcommand", name);
        for (size_t j = 0; j < n; j++) {
            if (!has_word(all[j].options, name)) continue;
            char *s = xasprintf("%s%s%s", owners ? owners : "", !k++ ? "" : k == n_owners ? " or " : ", ", all[j].what);
            free(owners);
            owners = s;
        }
        usage_error("--%s is an option of %s, not of %s", name, owners, cmd->what);
    }
}
