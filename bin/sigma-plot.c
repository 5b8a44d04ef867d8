/* sigma-plot: draws metrics JSON Lines files through gnuplot: keys against
 * step (several runs overlaid), or each layer's expert load, a panel per
 * run, as lines or a heat map; PNG, SVG or the terminal. The data goes to
 * gnuplot inline (datablocks in the script on its standard input), and
 * gnuplot writes the picture to its standard output: our temporary file
 * beside the output, renamed into place when gnuplot succeeded. */
#include "base/base.h"
#include "train/metrics.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

static void help(FILE *out)
{
    fprintf(out,
            "usage: sigma-plot -o FILE.png|FILE.svg [OPTIONS] METRICS...\n"
            "       sigma-plot --terminal [OPTIONS] METRICS...\n"
            "       sigma-plot --dump [OPTIONS] METRICS...\n"
            "\n"
            "Draws metrics JSON Lines files (sigma-pretrain --metrics) through gnuplot: keys\n"
            "against step, the runs overlaid; or each layer's expert load (the relative\n"
            "deviation of its busiest and idlest expert from an even share), a panel per run,\n"
            "as lines or as a heat map of layer by step.\n"
            "\n"
            "  -o, --out FILE           the picture, PNG or SVG by FILE's suffix\n"
            "  -y, --keys K,...         the keys against step (default loss); KEY[i] is element i\n"
            "                           of an array key: load_max[0] is layer 0's busiest expert\n"
            "      --load               each layer's load_max and load_min, a panel per run\n"
            "      --layers L,...       with --load or --heatmap: these layers only (default all)\n"
            "      --heatmap            load_max as a heat map of layer by step, a panel per run\n"
            "      --names N,...        the runs' names (default: the files' names less .jsonl)\n"
            "      --title TEXT         the picture's title\n"
            "      --log                a logarithmic y axis\n"
            "      --smooth N           each series as the mean of its last N points\n"
            "      --size WxH           pixels (default 800x500, or 800x300 a panel); characters\n"
            "                           with --terminal (default 100x30)\n"
            "      --terminal           draw on standard output in text (gnuplot's dumb terminal)\n"
            "      --dump               write the series that would be drawn to standard output,\n"
            "                           tab-separated: run, key, step, value; draw nothing\n"
            "\n");
    cli_help_end(out);
}

/* A comma-separated list, split in place. */
static char **split_list(char *s, int *n)
{
    char **v = NULL;
    *n = 0;
    for (char *save = NULL, *w = strtok_r(s, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        v = xrealloc(v, (size_t)(*n + 1) * sizeof *v);
        v[(*n)++] = w;
    }
    return v;
}

/* A string in gnuplot's single quotes (a quote is doubled). */
static void gp_str(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        if (*s != '\n') fputc(*s, f);
    }
    fputc('\'', f);
}

typedef struct {
    const char *name;
    MetricsLog log;
} Run;

typedef struct {
    const char *key;
    int run;
    MetricsSeries s;
} Series;

static void smooth(MetricsSeries *s, int n)
{
    if (n <= 1) return;
    double sum = 0, *out = xmalloc((s->n ? s->n : 1) * sizeof *out);
    for (size_t i = 0; i < s->n; i++) {
        sum += s->value[i];
        if (i >= (size_t)n) sum -= s->value[i - (size_t)n];
        out[i] = sum / (double)(i + 1 < (size_t)n ? i + 1 : (size_t)n);
    }
    free(s->value);
    s->value = out;
}

static void datablock(FILE *f, int id, const MetricsSeries *s)
{
    fprintf(f, "$d%d << EOD\n", id);
    for (size_t i = 0; i < s->n; i++) fprintf(f, "%.17g %.17g\n", s->step[i], s->value[i]);
    fprintf(f, "EOD\n");
}

/* gnuplot with its standard output on fd `out`; returns its stdin and pid. */
static FILE *gnuplot_start(int out, pid_t *pid)
{
    int p[2];
    if (pipe(p)) die("pipe: %s", strerror(errno));
    fflush(NULL);
    *pid = fork();
    if (*pid < 0) die("fork: %s", strerror(errno));
    if (*pid == 0) {
        dup2(p[0], 0);
        if (out != 1) dup2(out, 1);
        close(p[0]);
        close(p[1]);
        execlp("gnuplot", "gnuplot", (char *)NULL);
        fprintf(stderr, "%s: gnuplot not found (%s): install gnuplot-nox (scripts/deps)\n", sg_prog, strerror(errno));
        _exit(127);
    }
    close(p[0]);
    FILE *f = fdopen(p[1], "w");
    if (!f) die("fdopen: %s", strerror(errno));
    return f;
}

static void gnuplot_finish(FILE *f, pid_t pid)
{
    int bad = fclose(f) != 0, st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) die("waitpid: %s", strerror(errno));
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127) exit(1);   /* not found: the child said so */
    if (!WIFEXITED(st) || WEXITSTATUS(st)) die("gnuplot failed (%s %d)", WIFEXITED(st) ? "exit" : "signal",
                                               WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    if (bad) die("writing to gnuplot failed");
}

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    const char *out = NULL, *title = NULL;
    char *keys_arg = NULL, *names_arg = NULL, *layers_arg = NULL;
    int load = 0, heat = 0, logy = 0, term = 0, dump = 0, smooth_n = 0, w = 0, h = 0;
    enum { O_LOAD = 256, O_LAYERS, O_HEAT, O_NAMES, O_TITLE, O_LOG, O_SMOOTH, O_SIZE, O_TERM, O_DUMP };
    static const struct option longopts[] = {
        {"out", required_argument, 0, 'o'}, {"keys", required_argument, 0, 'y'}, {"load", no_argument, 0, O_LOAD},
        {"layers", required_argument, 0, O_LAYERS}, {"heatmap", no_argument, 0, O_HEAT},
        {"names", required_argument, 0, O_NAMES}, {"title", required_argument, 0, O_TITLE},
        {"log", no_argument, 0, O_LOG}, {"smooth", required_argument, 0, O_SMOOTH},
        {"size", required_argument, 0, O_SIZE}, {"terminal", no_argument, 0, O_TERM},
        {"dump", no_argument, 0, O_DUMP}, CLI_COMMON_OPTIONS};
    int c;
    while ((c = cli_getopt(argc, argv, "o:y:", longopts, help)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'y': keys_arg = xstrdup(optarg); break;
        case O_LOAD: load = 1; break;
        case O_LAYERS: layers_arg = xstrdup(optarg); break;
        case O_HEAT: heat = 1; break;
        case O_NAMES: names_arg = xstrdup(optarg); break;
        case O_TITLE: title = optarg; break;
        case O_LOG: logy = 1; break;
        case O_SMOOTH: smooth_n = (int)parse_u64("--smooth", optarg, 1, 1u << 20); break;
        case O_SIZE:
            if (sscanf(optarg, "%dx%d", &w, &h) != 2 || w < 10 || h < 10 || w > 20000 || h > 20000)
                usage_error("--size: WIDTHxHEIGHT, each 10 to 20000, not '%s'", optarg);
            break;
        case O_TERM: term = 1; break;
        case O_DUMP: dump = 1; break;
        }
    }
    if (optind >= argc) usage_error("no metrics file");
    if (load + heat > 1) usage_error("--load and --heatmap: one picture at a time");
    if (keys_arg && (load || heat)) usage_error("--keys draws keys against step; --load and --heatmap draw the load");
    if (layers_arg && !load && !heat) usage_error("--layers goes with --load or --heatmap");
    if (term + dump + (out != NULL) != 1) usage_error("one of -o FILE, --terminal and --dump");
    int svg = 0;
    if (out) {
        const char *dot = strrchr(out, '.');
        if (dot && !strcasecmp(dot, ".svg")) svg = 1;
        else if (!dot || strcasecmp(dot, ".png")) usage_error("-o: a .png or .svg file, not '%s'", out);
    }

    int n_runs = argc - optind, n_names = 0;
    Run *runs = xcalloc((size_t)n_runs, sizeof *runs);
    char **names = names_arg ? split_list(names_arg, &n_names) : NULL;
    if (names && n_names != n_runs) usage_error("--names: %d names for %d files", n_names, n_runs);
    for (int r = 0; r < n_runs; r++) {
        const char *path = argv[optind + r];
        metrics_read(&runs[r].log, path);
        if (names) runs[r].name = names[r];
        else {
            const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
            char *n = xstrdup(base);
            size_t l = strlen(n);
            if (l > 6 && !strcmp(n + l - 6, ".jsonl")) n[l - 6] = 0;
            runs[r].name = n;
        }
    }

    /* The series: each key of each run, or each chosen layer's max and min. */
    Series *series = NULL;
    int n_series = 0, n_layers = 0, *layers = NULL;
    if (load || heat) {
        n_layers = metrics_layers(&runs[0].log);
        for (int r = 1; r < n_runs; r++)
            if (metrics_layers(&runs[r].log) != n_layers)
                die("%s has %d layers, %s %d: --load and --heatmap draw runs of one model", runs[r].log.path,
                    metrics_layers(&runs[r].log), runs[0].log.path, n_layers);
        if (layers_arg) {
            int n;
            char **v = split_list(layers_arg, &n);
            layers = xmalloc((size_t)n * sizeof *layers);
            for (int i = 0; i < n; i++) layers[i] = (int)parse_u64("--layers", v[i], 0, (uint64_t)n_layers - 1);
            n_layers = n;
            free(v);
        } else {
            layers = xmalloc((size_t)n_layers * sizeof *layers);
            for (int i = 0; i < n_layers; i++) layers[i] = i;
        }
        for (int r = 0; r < n_runs; r++)
            for (int i = 0; i < n_layers; i++)
                for (int m = 0; m < (heat ? 1 : 2); m++) {
                    series = xrealloc(series, (size_t)(n_series + 1) * sizeof *series);
                    series[n_series++] = (Series){.key = xasprintf("%s[%d]", m ? "load_min" : "load_max", layers[i]), .run = r};
                }
    } else {
        int n_keys;
        if (!keys_arg) keys_arg = xstrdup("loss");
        char **keys = split_list(keys_arg, &n_keys);
        if (!n_keys) usage_error("--keys: no key");
        for (int r = 0; r < n_runs; r++)
            for (int k = 0; k < n_keys; k++) {
                series = xrealloc(series, (size_t)(n_series + 1) * sizeof *series);
                series[n_series++] = (Series){.key = keys[k], .run = r};
            }
        free(keys);
    }
    for (int i = 0; i < n_series; i++) {
        MetricsSeries *s = &series[i].s;
        metrics_series(&runs[series[i].run].log, series[i].key, s);
        if (!s->n) die("%s: '%s' has no numbers (every line that has it holds null)", runs[series[i].run].log.path,
                       series[i].key);
        smooth(s, smooth_n);
        for (size_t j = 0; logy && j < s->n; j++)
            if (s->value[j] <= 0)
                die("%s: '%s' is %g at step %.0f: --log draws only values above 0", runs[series[i].run].log.path,
                    series[i].key, s->value[j], s->step[j]);
    }

    if (dump) {
        term = 1;   /* no picture: the cleanup below frees what a drawing frees */
        for (int i = 0; i < n_series; i++)
            for (size_t j = 0; j < series[i].s.n; j++)
                printf("%s\t%s\t%.17g\t%.17g\n", runs[series[i].run].name, series[i].key, series[i].s.step[j],
                       series[i].s.value[j]);
        xfclose(stdout, "standard output");
        goto done;
    }

    /* The script. */
    int panels = load || heat ? n_runs : 1;
    if (!w) w = term ? 100 : 800, h = term ? 30 : (panels > 1 || load || heat ? 300 * panels : 500);
    AtomicFile af = {0};
    int fd = 1;
    if (out) {
        atomic_file_open(&af, out);
        fflush(af.f);
        fd = fileno(af.f);
    }
    signal(SIGPIPE, SIG_IGN);
    pid_t pid;
    FILE *gp = gnuplot_start(fd, &pid);
    if (term) fprintf(gp, "set terminal dumb size %d,%d noenhanced\n", w, h);
    else if (svg) fprintf(gp, "set terminal svg size %d,%d fixed noenhanced background rgb 'white'\n", w, h);
    else fprintf(gp, "set terminal pngcairo size %d,%d noenhanced\n", w, h);
    fprintf(gp, "set output\nset grid\nset xlabel 'step'\n");
    if (logy) fprintf(gp, "set logscale y\n");
    for (int i = 0; i < n_series; i++) {
        if (!heat) {
            datablock(gp, i, &series[i].s);
            continue;
        }
        /* the heat map: step, layer position, value, a row per step of each layer */
        if (i % n_layers) continue;
        fprintf(gp, "$h%d << EOD\n", i / n_layers);
        for (int l = 0; l < n_layers; l++) {
            const MetricsSeries *s = &series[i + l].s;
            for (size_t j = 0; j < s->n; j++) fprintf(gp, "%.17g %d %.17g\n", s->step[j], l, s->value[j]);
            fprintf(gp, "\n");
        }
        fprintf(gp, "EOD\n");
    }
    if (panels > 1) {
        fprintf(gp, "set multiplot layout %d,1", panels);
        if (title) fprintf(gp, " title "), gp_str(gp, title);
        fprintf(gp, "\n");
    } else if (title) {
        fprintf(gp, "set title "), gp_str(gp, title), fprintf(gp, "\n");
    }
    if (load || heat) {
        /* one scale for every panel, so that the runs compare at a glance */
        double lo = series[0].s.value[0], hi = lo;
        for (int i = 0; i < n_series; i++)
            for (size_t j = 0; j < series[i].s.n; j++) {
                lo = series[i].s.value[j] < lo ? series[i].s.value[j] : lo;
                hi = series[i].s.value[j] > hi ? series[i].s.value[j] : hi;
            }
        if (hi <= lo) hi = lo + 1;
        double pad = heat ? 0 : 0.05 * (hi - lo);   /* lines on the frame would hide */
        fprintf(gp, "set autoscale xfix\nset %srange [%.17g:%.17g]\n", heat ? "cb" : "y", lo - pad, hi + pad);
        fprintf(gp, "set ylabel %s\n", heat ? "'layer'" : "'deviation from an even load'");
        if (load) fprintf(gp, "set key outside right top\n");
        if (heat) {
            fprintf(gp, "set ytics (");
            for (int l = 0; l < n_layers; l++) fprintf(gp, "%s'%d' %d", l ? ", " : "", layers[l], l);
            fprintf(gp, ")\nset yrange [-0.5:%d.5]\nset cblabel 'busiest expert: deviation'\n", n_layers - 1);
        }
        for (int r = 0; r < n_runs; r++) {
            fprintf(gp, "set title ");
            gp_str(gp, panels > 1 || !title ? runs[r].name : title);
            if (heat) {
                fprintf(gp, "\nplot $h%d using 1:2:3 with image notitle\n", r);
                continue;
            }
            fprintf(gp, "\nplot ");
            for (int l = 0; l < n_layers; l++)
                for (int m = 0; m < 2; m++) {
                    int id = (r * n_layers + l) * 2 + m;
                    char *t = xasprintf("layer %d %s", layers[l], m ? "min" : "max");
                    fprintf(gp, "%s$d%d using 1:2 with lines lc %d dt %d title ", l + m ? ", " : "", id, l + 1, m ? 2 : 1);
                    gp_str(gp, t);
                    free(t);
                }
            fprintf(gp, "\n");
        }
    } else {
        fprintf(gp, "set key top right\nplot ");
        for (int i = 0; i < n_series; i++) {
            char *t = n_runs > 1 ? xasprintf("%s: %s", runs[series[i].run].name, series[i].key) : xstrdup(series[i].key);
            fprintf(gp, "%s$d%d using 1:2 with %s title ", i ? ", " : "", i, series[i].s.n > 1 ? "lines" : "points");
            gp_str(gp, t);
            free(t);
        }
        fprintf(gp, "\n");
    }
    if (panels > 1) fprintf(gp, "unset multiplot\n");
    fprintf(gp, "set output\n");
    gnuplot_finish(gp, pid);
    if (out) {
        if (lseek(fd, 0, SEEK_END) <= 0) die("gnuplot wrote nothing for %s", out);
        atomic_file_commit(&af);
    } else {
        xfclose(stdout, "standard output");
    }
done:
    for (int i = 0; i < n_series; i++) {
        metrics_series_free(&series[i].s);
        if (load || heat) free((char *)series[i].key);
    }
    free(series);
    for (int r = 0; r < n_runs; r++) {
        metrics_log_free(&runs[r].log);
        if (!names) free((char *)runs[r].name);
    }
    free(runs);
    free(names);
    free(layers);
    free(keys_arg);
    free(names_arg);
    free(layers_arg);
    return 0;
}
