/* sigma: the front. `sigma CMD ARGS` runs sigma-CMD ARGS, found beside this
 * program first, then on PATH, as git does with its subcommands. */
#include "base/base.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The tools that exist. */
static const struct { const char *name, *what; } tools[] = {
    {"tokenize", "train a byte-level BPE tokenizer; encode text to a token stream and back"},
    {"dedup", "remove exact and near-duplicate documents (MinHash LSH)"},
    {"shard", "write a token stream into a checksummed shard set; verify, info, cat"},
    {"pretrain", "train a Sigma-MoE model on a shard set (CPU or CUDA)"},
    {"sft", "fine-tune a checkpoint on chat data (CPU or CUDA)"},
    {"generate", "sample text from a checkpoint"},
    {"eval", "loss, the experts' load, benchmarks scored as lm-evaluation-harness"},
    {"export", "write a Hugging Face model directory; import one back"},
    {"plot", "draw metrics and the experts' load (PNG, SVG, the terminal)"},
};
#define N_TOOLS (sizeof tools / sizeof tools[0])

static char *self_dir(void)
{
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return NULL;
    buf[n] = 0;
    char *slash = strrchr(buf, '/');
    if (!slash) return NULL;
    *slash = 0;
    return xstrdup(buf);
}

/* The tool's path beside us, or NULL when it is not there. */
static char *beside_us(const char *tool)
{
    char *dir = self_dir();
    if (!dir) return NULL;
    char *path = xasprintf("%s/%s", dir, tool);
    free(dir);
    if (access(path, X_OK) == 0) return path;
    free(path);
    return NULL;
}

static int on_path(const char *tool)
{
    const char *path = getenv("PATH");
    if (!path) return 0;
    char *copy = xstrdup(path), *save = NULL;
    int found = 0;
    for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char *p = xasprintf("%s/%s", *d ? d : ".", tool);
        found = access(p, X_OK) == 0;
        free(p);
    }
    free(copy);
    return found;
}

static void help(FILE *out)
{
    fprintf(out,
            "usage: sigma CMD [ARGS...]    run sigma-CMD\n"
            "       sigma help [CMD]       list the tools, or show CMD's --help\n"
            "       sigma -h | --help      this help\n"
            "       sigma --version\n\n"
            "Train ultra-sparse Mixture-of-Experts language models with small tools\n"
            "that pass token streams, shard sets and checkpoints to each other.\n\n"
            "Tools:\n");
    int missing = 0;
    for (size_t i = 0; i < N_TOOLS; i++) {
        char *tool = xasprintf("sigma-%s", tools[i].name);
        char *p = beside_us(tool);
        int have = p || on_path(tool);
        missing += !have;
        fprintf(out, "  %-10s%s %s\n", tools[i].name, have ? " " : "*", tools[i].what);
        free(p);
        free(tool);
    }
    if (missing) fprintf(out, "(* not found beside sigma or on PATH)\n");
    fprintf(out, "\n'sigma CMD --help' and man sigma-CMD tell more; man sigma-formats for the files.\n\n"
                 "See sigma(1).\n");
}

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    if (argc < 2) { help(stderr); return 2; }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        if (argc > 2 && strcmp(cmd, "help") == 0) {   /* sigma help CMD = sigma CMD --help */
            cmd = argv[2];
            argv[2] = "--help";
            argv[3] = NULL;   /* argv[argc] is NULL, so argv[3] exists */
        } else {
            help(stdout);
            return 0;
        }
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("sigma %s\n", SIGMA_VERSION);
        return 0;
    }
    if (cmd[0] == '-') usage_error("unknown option '%s'", cmd);
    if (strchr(cmd, '/')) usage_error("'%s' is not a sigma command", cmd);

    char *tool = xasprintf("sigma-%s", cmd);
    char *path = beside_us(tool);
    argv[1] = tool;
    if (path) execv(path, argv + 1);
    else execvp(tool, argv + 1);
    if (errno == ENOENT) {
        fprintf(stderr, "%s: '%s' is not a sigma command (no %s beside sigma or on PATH). See 'sigma help'.\n",
                sg_prog, cmd, tool);
        return 2;
    }
    die("cannot run %s: %s", path ? path : tool, strerror(errno));
}
