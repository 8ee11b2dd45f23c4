"""The core's options, with uWSGI's names, short forms and defaults. Plugins declare theirs in
their Plugin.options; shared services in uwsgid/services. Importing this module declares them."""

from uwsgid.config.options import Option, declare

O = Option

declare(
    # --- configuration sources ---------------------------------------------------------
    O("ini", kind="str", multi=True, metavar="FILE[:SECTION]", help="load config from an ini file (default section [uwsgi])"),
    O("json", "j", kind="str", multi=True, aliases=("js",), metavar="FILE[:SECTION]", help="load config from a json file"),
    O("yaml", "y", kind="str", multi=True, metavar="FILE[:SECTION]", aliases=("yml",), help="load config from a yaml file"),
    O("set", "S", kind="str", multi=True, metavar="KEY=VALUE", help="set a placeholder or an option"),
    O("set-placeholder", kind="str", multi=True, aliases=("set-ph",), metavar="KEY=VALUE", help="set a placeholder without setting an option"),
    O("inherit", kind="str", multi=True, help="use the specified file as config template"),
    O("version", kind="flag", help="print the version and exit"),
    O("help", "h", kind="flag", aliases=("usage",), help="list the options of the core and of each loaded plugin"),
    O("plugins-list", kind="flag", aliases=("plugin-list",), help="list the embedded and loaded plugins and exit"),
    O("print", kind="str", multi=True, help="print a message (after placeholder expansion) at start-up"),
    O("strict", kind="flag", help="exit on unknown options in config files as well (CLI always exits)"),

    # --- plugins ------------------------------------------------------------------------
    O("plugins", kind="str", multi=True, aliases=("plugin",), metavar="NAME[,NAME]",
      help="load plugins (NAME, N:NAME to override its modifier1, or a path to NAME_plugin.so)"),
    O("plugin-dir", kind="str", multi=True, aliases=("plugins-dir",), help="add a directory to the plugin search path"),
    O("need-plugin", kind="str", multi=True, aliases=("need-plugins",), help="load plugins and exit on error"),
    O("autoload", kind="flag", help="for an unknown option, load the NAME_plugin.so (--plugin-dir, the executable's dir) declaring it"),
    O("cffi-home", kind="str", metavar="DIR",
      help="PYTHONHOME or a virtualenv for the embedded Python (read by ./uwsgi before Python starts)"),

    # --- sockets -----------------------------------------------------------------------
    O("socket", "s", kind="str", multi=True, aliases=("uwsgi-socket",), metavar="ADDR",
      help="bind a uwsgi-protocol socket (host:port, :port, /path or @abstract)"),
    O("http-socket", kind="str", multi=True, metavar="ADDR", help="bind an HTTP/1.1 socket served by the workers"),
    O("http", kind="str", multi=True, metavar="ADDR", help="start an HTTP router process on ADDR in front of the workers"),
    O("http-modifier1", kind="int", default=0, help="modifier1 for requests coming from the --http router"),
    O("http-modifier2", kind="int", default=0, help="modifier2 for requests coming from the --http router"),
    O("http-socket-modifier1", kind="int", default=0, help="modifier1 for requests on --http-socket"),
    O("http-socket-modifier2", kind="int", default=0, help="modifier2 for requests on --http-socket"),
    O("http-keepalive", kind="flag", default=True,
      help="keep HTTP/1.1 connections alive (on by default; --http-keepalive=0 disables)"),
    O("chmod-socket", "C", kind="optional", const="666", aliases=("chmod",), metavar="[MODE]", help="chmod unix sockets (default 666)"),
    O("chown-socket", kind="str", metavar="USER[:GROUP]", help="chown unix sockets"),
    O("listen", "l", kind="int", default=100, help="socket listen queue size"),
    O("socket-timeout", "z", kind="int", default=4, help="drop a silent or slow client after SECS"),
    O("http-header-timeout", kind="int", default=5, metavar="SECS",
      help="a request's head (an HTTP head, a uwsgi packet's vars) must arrive within SECS of its first byte "
           "(of the accept, on a new connection): bytes trickling in do not extend it; 408 over HTTP"),
    O("max-pending-heads", kind="int", default=0, metavar="N",
      help="connections a worker keeps while their request is still arriving (they never hold a sync "
           "worker or a thread); past N the oldest is closed. 0 = half the open-files limit"),
    O("buffer-size", "b", kind="size", default=4096, help="max size of a request's headers / uwsgi packet"),
    O("max-vars", "v", kind="int", default=64, help="max number of request vars"),
    O("post-buffering", kind="size", default=0, help="buffer request bodies over SIZE to a temp file (0 = in memory)"),
    O("limit-post", kind="size", default=0, help="answer 413 to a request body over SIZE bytes (0 = no limit)"),
    O("shared-socket", kind="str", multi=True, metavar="ADDR",
      help="an address --socket/--http-socket/--http name as =N (N from 0), bound by the master before privileges drop"),
    O("reuse-port", kind="flag", help="set SO_REUSEPORT on bound sockets"),
    O("no-defer-accept", kind="flag", help="accept connections to TCP sockets as soon as they open; by "
      "default (as in uWSGI) the kernel hands them over once the client has sent data, or after "
      "--socket-timeout"),
    O("abstract-socket", kind="flag", help="force unix sockets to the abstract namespace"),

    # --- processes -------------------------------------------------------------------------
    O("master", "M", kind="flag", help="enable the master process"),
    O("processes", "p", kind="int", default=1, aliases=("workers",), help="spawn N worker processes"),
    O("threads", kind="int", default=1, help="run each worker with N threads (each with its own loop)"),
    O("thread-slots", kind="int", help="while a worker's requests are CPU-heavy (2 ms of CPU or more), how "
      "many of its threads take new connections at once; another thread joins in while a holder's request "
      "blocks (I/O, slow client) or runs past 100 ms. Keeps CPU-heavy requests from time-slicing each "
      "other out of the CPU caches. Default: CPU cores / processes, at least 1; 0 = every idle thread "
      "accepts, as in uWSGI"),
    O("enable-threads", "T", kind="flag", help="accepted for compatibility: the GIL is always managed (threads need no switch)"),
    O("async", kind="int", default=1, help="run N cooperative async cores per worker"),
    O("lazy-apps", kind="flag", help="load apps in each worker after fork instead of in the master"),
    O("lazy", kind="flag", help="same as --lazy-apps"),
    O("need-app", kind="flag", default=True, help="exit with code 22 when an app fails to load (default on; --need-app=0 disables)"),
    O("honour-stdin", kind="flag", aliases=("honor-stdin",), help="keep stdin open (do not remap it to /dev/null)"),
    O("pidfile", kind="str", help="write the master's pid to FILE"),
    O("pidfile2", kind="str", help="write the master's pid to FILE after privileges drop"),
    O("daemonize", "d", kind="str", metavar="LOGFILE", help="daemonize, logging to LOGFILE"),
    O("daemonize2", kind="str", metavar="LOGFILE", help="daemonize after app loading, logging to LOGFILE"),
    O("uid", kind="str", help="setuid to USER or UID after binding"),
    O("gid", kind="str", help="setgid to GROUP or GID after binding"),
    O("vacuum", kind="flag", help="remove unix sockets and pidfiles on exit"),
    O("chdir", kind="str", help="chdir to DIR before loading apps"),
    O("chdir2", kind="str", help="chdir to DIR after loading apps"),
    O("procname-prefix", kind="str", help="prefix process names"),
    O("procname-master", kind="str", help="name of the master process"),
    O("auto-procname", kind="flag", help="name processes 'uWSGI master' / 'uWSGI worker N'"),
    O("cheaper", needs_master=True, kind="int", default=0, metavar="N",
      help="adapt the running workers between N and --processes to the load (uWSGI's spare algorithm)"),
    O("cheaper-initial", needs_master=True, kind="int", default=0, metavar="N", help="with --cheaper: workers started (default --cheaper)"),
    O("cheaper-step", needs_master=True, kind="int", default=1, metavar="N", help="with --cheaper: workers spawned at once when all are busy"),
    O("cheaper-overload", needs_master=True, kind="int", default=3, metavar="SECS",
      help="with --cheaper: seconds of all-busy before spawning, and of idleness between cheaping workers"),

    # --- lifecycle --------------------------------------------------------------------------
    O("harakiri", "t", kind="int", default=0, help="kill and respawn a worker stuck in one request over SECS"),
    O("harakiri-verbose", kind="flag", help="log more about harakiri kills"),
    O("max-requests", "R", kind="int", default=0,
      help="recycle a worker after N requests, but never before it has run --min-worker-lifetime "
           "(10 s by default: set that to 0 to recycle at once)"),
    O("reload-on-rss", kind="int", default=0, metavar="MB", help="recycle a worker whose RSS exceeds MB after a request"),
    O("evil-reload-on-rss", needs_master=True, kind="int", default=0, metavar="MB", help="the master kills a worker whose RSS exceeds MB"),
    O("worker-reload-mercy", kind="int", default=60, help="seconds a worker may take to stop gracefully before being killed"),
    O("reload-mercy", kind="int", default=60, help="seconds to wait for workers on a reload"),
    O("touch-reload", needs_master=True, kind="str", multi=True, help="gracefully reload when FILE is modified or touched"),
    O("die-on-term", kind="flag", help="accepted for compatibility: SIGTERM always stops gracefully here"),
    O("exit-on-reload", kind="flag", help="stop instead of reloading on SIGHUP"),
    O("min-worker-lifetime", kind="int", default=10, metavar="SECS",
      help="a worker is recycled by --max-requests / --reload-on-rss only once it has run SECS"),
    O("no-orphans", kind="flag", help="workers exit when the master dies"),

    # --- logging -----------------------------------------------------------------------------
    O("logto", kind="str", help="log to FILE (or udp ADDR)"),
    O("logto2", kind="str", help="log to FILE after privileges drop"),
    O("log-format", kind="str", aliases=("logformat",), help="request log line format with %(var) names"),
    O("log-format-json", kind="flag", help="log requests as one JSON object per line"),
    O("disable-logging", "L", kind="flag", help="disable request logging"),
    O("log-4xx", kind="flag", help="log 4xx responses even with --disable-logging"),
    O("log-5xx", kind="flag", help="log 5xx responses even with --disable-logging"),
    O("log-slow", kind="int", default=0, metavar="MSECS", help="log requests slower than MSECS even with --disable-logging"),
    O("log-date", kind="optional", const="", metavar="[FORMAT]",
      help="prefix the server's log lines (not request lines) with the date: ctime, or a strftime FORMAT"),
    O("memory-report", "m", kind="flag", help="add rss/vsz to request log lines"),
    O("log-master", needs_master=True, kind="flag", help="accepted for compatibility: every process writes whole lines to the log itself"),

    # --- stats -----------------------------------------------------------------------------
    O("stats", needs_master=True, kind="str", aliases=("stats-server",), metavar="ADDR", help="serve the stats JSON on ADDR"),
    O("stats-http", needs_master=True, kind="flag", help="frame the stats JSON as an HTTP response"),
    O("stats-minified", needs_master=True, kind="flag", help="minify the stats JSON"),

    # --- websockets (uwsgid/net/websocket.py) ---------------------------------------------------
    O("websocket-ping-freq", kind="int", default=30, aliases=("websockets-ping-freq",), metavar="SECS",
      help="a WebSocket the app waits on gets a ping after SECS of silence"),
    O("websocket-pong-tolerance", kind="int", default=3, aliases=("websockets-pong-tolerance",), metavar="SECS",
      help="a WebSocket whose ping is not answered within SECS is closed"),
    O("websocket-max-size", kind="int", default=1024, aliases=("websockets-max-size",), metavar="KB",
      help="the largest WebSocket message accepted, in KB: a bigger one closes the socket with 1009"),

    # --- environment -----------------------------------------------------------------------
    O("env", kind="str", multi=True, metavar="KEY=VALUE", help="set an environment variable"),
    O("unenv", kind="str", multi=True, help="unset an environment variable"),
)
