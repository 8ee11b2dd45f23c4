/* The ./uwsgi launcher: start CPython on the right home, then hand argv to the Python core
 * through the cffi embedding API (uwsgi_run, implemented in uwsgid/embed.py).
 *
 * Python is initialized here rather than by cffi because the home (a virtualenv holding
 * _cffi_backend and the uwsgid package) must be known before cffi's module init runs:
 * --cffi-home DIR / --cffi-home=DIR on the command line, else $UWSGI_CFFI_HOME, else the
 * home baked at build time (UWSGI_DEFAULT_HOME, the project's .venv).
 *
 * The embedding module is started here too (uwsgi_embed_start, before uwsgi_run): when cffi's
 * init fails, a call to uwsgi_run() prints "initialization code failed. Returning 0." and
 * returns 0, an exit status nobody could tell from a clean stop. A home that cannot start it
 * (no cffi, a cffi that does not fit the build) exits 1 with one line saying what to fix.
 *
 * Compiled only into the executable (-DUWSGI_EXECUTABLE), never into the _uwsgi module.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "../uwsgi.h"

#ifndef UWSGI_DEFAULT_HOME
#define UWSGI_DEFAULT_HOME ""
#endif

extern char **environ;
extern int uwsgi_run(int argc, char **argv);   /* cffi embedding_api, see uwsgiconfig.py */
extern int uwsgi_embed_start(void);            /* cffi_start_python(): 0, or -1 (uwsgiconfig.EMBED_C) */
extern const char *uwsgi_embed_cffi_version(void);   /* the cffi that generated the module */

static const char *home_from;                  /* "--cffi-home", "$UWSGI_CFFI_HOME", NULL: built in */
static int saved_argc;
static char **saved_argv;                      /* private copy: argv memory gets overwritten */
static char *title_start, *title_end;          /* the argv (+environ) area ps reads */

/* Make argv's memory reusable for the process title: copy argv for ourselves, move environ
 * strings that follow argv to the heap so their space can hold a longer title. */
static void proctitle_init(int argc, char **argv) {
    int i;
    char *end;
    saved_argc = argc;
    saved_argv = calloc((size_t)argc + 1, sizeof(char *));
    for (i = 0; i < argc; i++)
        saved_argv[i] = strdup(argv[i]);
    if (argc == 0 || argv[0] == NULL)
        return;
    end = argv[0] + strlen(argv[0]) + 1;
    for (i = 1; i < argc; i++) {
        if (argv[i] != end)
            break;
        end = argv[i] + strlen(argv[i]) + 1;
    }
    for (i = 0; environ[i]; i++) {
        if (environ[i] != end)
            break;
        end = environ[i] + strlen(environ[i]) + 1;
        environ[i] = strdup(environ[i]);
    }
    title_start = argv[0];
    title_end = end;
}

int uwsgi_set_proctitle(const char *title) {
    size_t room, n;
    if (title == NULL)
        return -1;
    prctl(PR_SET_NAME, (unsigned long)title, 0, 0, 0);
    if (title_start == NULL)
        return -1;
    room = (size_t)(title_end - title_start);
    n = strlen(title);
    if (n >= room)
        n = room - 1;
    memcpy(title_start, title, n);
    memset(title_start + n, 0, room - n);
    return 0;
}

int uwsgi_argc(void) {
    return saved_argc;
}

const char *uwsgi_argv(int i) {
    if (i < 0 || i >= saved_argc)
        return NULL;
    return saved_argv[i];
}

/* --cffi-home DIR, --cffi-home=DIR (last one wins, like every option), else env, else baked. */
static const char *find_home(int argc, char **argv) {
    const char *home = NULL;
    int i;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--cffi-home") == 0 && i + 1 < argc)
            home = argv[++i];
        else if (strncmp(argv[i], "--cffi-home=", 12) == 0)
            home = argv[i] + 12;
    }
    home_from = "--cffi-home";
    if (home == NULL) {
        home = getenv("UWSGI_CFFI_HOME");
        home_from = "$UWSGI_CFFI_HOME";
    }
    if (home == NULL || home[0] == 0) {
        home = UWSGI_DEFAULT_HOME;
        home_from = NULL;
    }
    return home;
}

/* How the error lines name the home's origin, and where a better home goes. */
static const char *home_label(void) {
    return home_from ? home_from : "the home built into uwsgi";
}

static const char *home_advice(void) {
    if (home_from == NULL)
        return "or give --cffi-home a virtualenv that has it";
    if (home_from[0] == '$')
        return "or point $UWSGI_CFFI_HOME at a virtualenv that has it";
    return "or point --cffi-home at a virtualenv that has it";
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void check(PyStatus status, PyConfig *config) {
    if (PyStatus_Exception(status)) {
        PyConfig_Clear(config);
        Py_ExitStatusException(status);
    }
}

/* The X.Y of a virtualenv's pyvenv.cfg ("version = 3.11.2", virtualenv's "version_info = ..."),
 * 0 when it says none. A venv of another Python has no site-packages this interpreter reads. */
static int venv_version(const char *cfg, int *major, int *minor) {
    char line[1024];
    int found = 0;
    FILE *f = fopen(cfg, "r");
    if (f == NULL)
        return 0;
    while (!found && fgets(line, sizeof(line), f)) {
        char *p = line, *key, *eq;
        while (*p == ' ' || *p == '\t')
            p++;
        key = p;
        eq = strchr(p, '=');
        if (eq == NULL)
            continue;
        while (eq > key && (eq[-1] == ' ' || eq[-1] == '\t'))
            eq--;
        if (!((eq - key == 7 && strncmp(key, "version", 7) == 0) ||
              (eq - key == 12 && strncmp(key, "version_info", 12) == 0)))
            continue;
        p = strchr(p, '=') + 1;
        found = sscanf(p, " %d.%d", major, minor) == 2;
    }
    fclose(f);
    return found;
}

/* A virtualenv home (pyvenv.cfg): point sys.executable at its python so that site.py
 * activates it exactly as the venv's own interpreter would. Any other directory is a
 * Python prefix (PYTHONHOME). */
static void set_home(PyConfig *config, const char *home) {
    char path[4096];
    int major, minor;
    if (home == NULL || home[0] == 0)
        return;
    if (!is_dir(home)) {
        fprintf(stderr, "uwsgi: %s %s: no such directory\n", home_label(), home);
        exit(1);
    }
    snprintf(path, sizeof(path), "%s/pyvenv.cfg", home);
    if (is_file(path)) {
        if (venv_version(path, &major, &minor) && (major != PY_MAJOR_VERSION || minor != PY_MINOR_VERSION)) {
            fprintf(stderr, "uwsgi: %s %s: a Python %d.%d virtualenv, but this uwsgi embeds Python %d.%d: "
                    "make one with python%d.%d -m venv, or rebuild uwsgi with Python %d.%d\n",
                    home_label(), home, major, minor, PY_MAJOR_VERSION, PY_MINOR_VERSION,
                    PY_MAJOR_VERSION, PY_MINOR_VERSION, major, minor);
            exit(1);
        }
        snprintf(path, sizeof(path), "%s/bin/python3", home);
        if (!is_file(path))
            snprintf(path, sizeof(path), "%s/bin/python", home);
        check(PyConfig_SetBytesString(config, &config->executable, path), config);
    } else {
        /* a Python prefix must hold the standard library, else CPython dies with a fatal error */
        snprintf(path, sizeof(path), "%s/lib/python%d.%d/os.py", home, PY_MAJOR_VERSION, PY_MINOR_VERSION);
        if (!is_file(path)) {
            fprintf(stderr, "uwsgi: %s %s: neither a virtualenv (no pyvenv.cfg) nor a "
                    "Python %d.%d prefix (no lib/python%d.%d/os.py)\n", home_label(), home,
                    PY_MAJOR_VERSION, PY_MINOR_VERSION, PY_MAJOR_VERSION, PY_MINOR_VERSION);
            exit(1);
        }
        check(PyConfig_SetBytesString(config, &config->home, home), config);
    }
}

/* --- starting the embedding module (the GIL held unless said otherwise) ------------------ */

/* str(obj) into buf, "" when it has none. */
static void py_str(PyObject *obj, char *buf, size_t size) {
    PyObject *s = obj ? PyObject_Str(obj) : NULL;
    const char *c = s ? PyUnicode_AsUTF8(s) : NULL;
    snprintf(buf, size, "%s", c ? c : "");
    Py_XDECREF(s);
    PyErr_Clear();
}

/* sys.prefix: the venv or prefix the home made of this interpreter. */
static void py_prefix(char *buf, size_t size) {
    py_str(PySys_GetObject("prefix"), buf, size);
    if (buf[0] == 0)
        snprintf(buf, size, "?");
}

/* cffi's embedding init imports _cffi_backend first: try it here, where its failure can be
 * one line (cffi's own report is a traceback, its sys.path, and then exit status 0). */
static void need_cffi(char *version, size_t size) {
    PyObject *mod = PyImport_ImportModule("_cffi_backend"), *type, *value, *tb, *name;
    char prefix[4096], why[1024], named[256] = "";
    if (mod != NULL) {
        PyObject *v = PyObject_GetAttrString(mod, "__version__");
        py_str(v, version, size);
        Py_XDECREF(v);
        Py_DECREF(mod);
        return;
    }
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    name = value ? PyObject_GetAttrString(value, "name") : NULL;
    PyErr_Clear();
    py_str(name, named, sizeof(named));
    Py_XDECREF(name);
    py_str(value, why, sizeof(why));
    py_prefix(prefix, sizeof(prefix));
    if (strcmp(named, "_cffi_backend") == 0)        /* plainly absent: the line says it all */
        why[0] = 0;
    else if (strchr(why, '\n'))
        *strchr(why, '\n') = 0;
    fprintf(stderr, "uwsgi: the Python at %s (%s) cannot import cffi%s%s%s: pip install cffi in it, %s\n",
            prefix, home_label(), why[0] ? " (" : "", why, why[0] ? ")" : "", home_advice());
    exit(1);
}

/* While cffi starts the module, its report of a failure (a traceback, the module's cffi
 * version, sys.path) goes to a StringIO instead of sys.stderr; NULL if that cannot be set up. */
static PyObject *capture_stderr(PyObject **saved) {
    PyObject *io = PyImport_ImportModule("io"), *buf = NULL;
    *saved = PySys_GetObject("stderr");      /* borrowed */
    Py_XINCREF(*saved);
    if (io != NULL) {
        buf = PyObject_CallMethod(io, "StringIO", NULL);
        Py_DECREF(io);
    }
    if (buf == NULL || PySys_SetObject("stderr", buf) < 0) {
        PyErr_Clear();
        Py_XDECREF(buf);
        Py_XDECREF(*saved);
        *saved = NULL;
        return NULL;
    }
    return buf;
}

/* Put sys.stderr back; returns what was captured (malloc'd, maybe ""). */
static char *release_stderr(PyObject *buf, PyObject *saved) {
    PyObject *text;
    const char *c;
    char *out;
    if (buf == NULL)
        return strdup("");
    PySys_SetObject("stderr", saved);
    Py_XDECREF(saved);
    text = PyObject_CallMethod(buf, "getvalue", NULL);
    c = text ? PyUnicode_AsUTF8(text) : NULL;
    out = strdup(c ? c : "");
    Py_XDECREF(text);
    Py_DECREF(buf);
    PyErr_Clear();
    return out;
}

/* cffi's report: "Failed to initialize ...:\n\n<traceback>\n\nFrom: _uwsgi\n...": the
 * exception's own line is the traceback's last line. */
static void report_start_failure(char *text, const char *home_cffi) {
    char prefix[4096], *end = strstr(text, "\nFrom: "), *nl;
    const char *built = uwsgi_embed_cffi_version(), *last;
    if (end == NULL)
        end = text + strlen(text);
    while (end > text && (end[-1] == '\n' || end[-1] == ' '))
        end--;
    *end = 0;
    nl = strrchr(text, '\n');
    last = nl ? nl + 1 : text;
    py_prefix(prefix, sizeof(prefix));
    if (last[0] == 0 || strncmp(last, "Failed to initialize", 20) == 0) {
        fputs(text, stderr);                 /* no exception line found: show cffi's whole report */
        fputs("\n", stderr);
        last = "see above";
    }
    if (strcmp(home_cffi, built) != 0)
        fprintf(stderr, "uwsgi: the Python at %s (%s) cannot start uwsgi's _uwsgi module (%s): it has cffi %s, "
                "uwsgi was built with cffi %s: pip install cffi==%s in it, or rebuild uwsgi with cffi %s\n",
                prefix, home_label(), last, home_cffi[0] ? home_cffi : "of unknown version", built, built,
                home_cffi[0] ? home_cffi : "of that Python");
    else
        fprintf(stderr, "uwsgi: the Python at %s (%s) cannot start uwsgi's _uwsgi module (%s)\n",
                prefix, home_label(), last);
}

int main(int argc, char **argv) {
    PyConfig config;
    PyThreadState *ts;
    PyObject *capture, *saved_stderr;
    char home_cffi[64] = "", *report;
    int rc;

    proctitle_init(argc, argv);

    PyConfig_InitPythonConfig(&config);
    config.parse_argv = 0;              /* argv belongs to uwsgi, not to the interpreter */
    config.install_signal_handlers = 1; /* as python does: SIGPIPE ignored, SIGINT -> KeyboardInterrupt */
    check(PyConfig_SetBytesArgv(&config, argc, saved_argv), &config);
    set_home(&config, find_home(argc, saved_argv));
    check(Py_InitializeFromConfig(&config), &config);
    PyConfig_Clear(&config);

    need_cffi(home_cffi, sizeof(home_cffi));
    capture = capture_stderr(&saved_stderr);
    /* cffi takes the GIL itself (PyGILState_Ensure) on every call into Python. */
    ts = PyEval_SaveThread();
    rc = uwsgi_embed_start();
    PyEval_RestoreThread(ts);
    report = release_stderr(capture, saved_stderr);
    if (rc != 0) {
        report_start_failure(report, home_cffi);
        exit(1);
    }
    if (report[0]) {                    /* a warning while starting: pass it on */
        PyObject *err = PySys_GetObject("stderr");
        if (err == NULL || err == Py_None || PyFile_WriteString(report, err) < 0)
            fputs(report, stderr);
        PyErr_Clear();
    }
    free(report);

    ts = PyEval_SaveThread();
    rc = uwsgi_run(argc, saved_argv);
    PyEval_RestoreThread(ts);

    if (Py_FinalizeEx() < 0 && rc == 0)
        rc = 120;
    return rc;
}
