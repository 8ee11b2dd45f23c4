/* The ./uwsgi launcher: start CPython on the right home, then hand argv to the Python core
 * through the cffi embedding API (uwsgi_run, implemented in uwsgid/embed.py).
 *
 * Python is initialized here rather than by cffi because the home (a virtualenv holding
 * _cffi_backend and the uwsgid package) must be known before cffi's module init runs:
 * --cffi-home DIR / --cffi-home=DIR on the command line, else $UWSGI_CFFI_HOME, else the
 * home baked at build time (UWSGI_DEFAULT_HOME, the project's .venv).
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
    if (home == NULL)
        home = getenv("UWSGI_CFFI_HOME");
    if (home == NULL || home[0] == 0)
        home = UWSGI_DEFAULT_HOME;
    return home;
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

/* A virtualenv home (pyvenv.cfg): point sys.executable at its python so that site.py
 * activates it exactly as the venv's own interpreter would. Any other directory is a
 * Python prefix (PYTHONHOME). */
static void set_home(PyConfig *config, const char *home) {
    char path[4096];
    if (home == NULL || home[0] == 0)
        return;
    if (!is_dir(home)) {
        fprintf(stderr, "uwsgi: --cffi-home %s: no such directory\n", home);
        exit(1);
    }
    snprintf(path, sizeof(path), "%s/pyvenv.cfg", home);
    if (is_file(path)) {
        snprintf(path, sizeof(path), "%s/bin/python3", home);
        if (!is_file(path))
            snprintf(path, sizeof(path), "%s/bin/python", home);
        check(PyConfig_SetBytesString(config, &config->executable, path), config);
    } else {
        /* a Python prefix must hold the standard library, else CPython dies with a fatal error */
        snprintf(path, sizeof(path), "%s/lib/python%d.%d/os.py", home, PY_MAJOR_VERSION, PY_MINOR_VERSION);
        if (!is_file(path)) {
            fprintf(stderr, "uwsgi: --cffi-home %s: neither a virtualenv (no pyvenv.cfg) nor a "
                    "Python %d.%d prefix (no lib/python%d.%d/os.py)\n", home,
                    PY_MAJOR_VERSION, PY_MINOR_VERSION, PY_MAJOR_VERSION, PY_MINOR_VERSION);
            exit(1);
        }
        check(PyConfig_SetBytesString(config, &config->home, home), config);
    }
}

int main(int argc, char **argv) {
    PyConfig config;
    int rc;

    proctitle_init(argc, argv);

    PyConfig_InitPythonConfig(&config);
    config.parse_argv = 0;              /* argv belongs to uwsgi, not to the interpreter */
    config.install_signal_handlers = 1; /* as python does: SIGPIPE ignored, SIGINT -> KeyboardInterrupt */
    check(PyConfig_SetBytesArgv(&config, argc, saved_argv), &config);
    set_home(&config, find_home(argc, saved_argv));
    check(Py_InitializeFromConfig(&config), &config);
    PyConfig_Clear(&config);

    /* cffi takes the GIL itself (PyGILState_Ensure) on every call into Python. */
    PyThreadState *ts = PyEval_SaveThread();
    rc = uwsgi_run(argc, saved_argv);
    PyEval_RestoreThread(ts);

    if (Py_FinalizeEx() < 0 && rc == 0)
        rc = 120;
    return rc;
}
