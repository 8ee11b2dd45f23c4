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
    O("socket", "s", kind="str", multi=True, metavar="ADDR",
      help="bind a socket (host:port, :port, /path or @abstract) speaking --protocol (default uwsgi)"),
    O("uwsgi-socket", kind="str", multi=True, metavar="ADDR",
      help="bind a uwsgi-protocol socket, whatever --protocol says"),
    O("protocol", kind="str", aliases=("socket-protocol",), metavar="uwsgi|http|http11|raw",
      help="the protocol of --socket sockets (default uwsgi; http11 = http, keep-alive being on here; "
           "raw: each connection to the --raw-modifier1 plugin's raw handler); fastcgi, scgi, puwsgi "
           "and the SSL ones are refused"),
    O("http-socket", kind="str", multi=True, metavar="ADDR", help="bind an HTTP/1.1 socket served by the workers"),
    O("https-socket", kind="str", multi=True, metavar="ADDR,CERT,KEY[,CIPHERS[,CA]]",
      help="bind an HTTPS socket served by the workers (TLS with the stdlib ssl; CA checks client "
           "certificates, !CA requires them); certificates are read again on reload"),
    O("sni", kind="str", multi=True, metavar="NAME,CERT,KEY[,CIPHERS[,CA]]",
      help="another certificate for the --https-socket listeners, chosen by the name the client asks "
           "for (NAME exact, or *.example.com)"),
    O("http11-socket", kind="str", multi=True, metavar="ADDR",
      help="the same as --http-socket (uWSGI's keep-alive HTTP socket: every HTTP socket here is one)"),
    O("http", kind="str", multi=True, metavar="ADDR", help="start an HTTP router process on ADDR in front of the workers"),
    O("https", kind="str", multi=True, metavar="ADDR,CERT,KEY[,CIPHERS[,CA]]",
      help="the --http router also serves HTTPS on ADDR (TLS ends in the router; --sni certificates apply)"),
    O("http-modifier1", kind="int", default=0, help="modifier1 for requests coming from the --http router"),
    O("http-modifier2", kind="int", default=0, help="modifier2 for requests coming from the --http router"),
    O("http-socket-modifier1", kind="int", default=0, help="modifier1 for requests on --http-socket"),
    O("http-socket-modifier2", kind="int", default=0, help="modifier2 for requests on --http-socket"),
    O("http-keepalive", kind="optional", const="1", default="1", metavar="[N]",
      help="keep HTTP/1.1 connections alive, on --http-socket and in the --http router (on by "
           "default; 0 disables; N > 1 also closes a connection idle for N seconds between requests, "
           "as uWSGI's router does; otherwise the router waits --http-timeout)"),
    O("http-timeout", kind="int", default=60, metavar="SECS",
      help="the --http router's timeout for client and worker I/O: a worker silent that long gets "
           "504 (before its response) or the client connection closed (during it)"),
    O("http-headers-timeout", kind="int", default=0, metavar="SECS",
      help="the --http router waits SECS for a client's request head (default --http-timeout)"),
    O("http-connect-timeout", kind="int", default=0, metavar="SECS",
      help="the --http router's timeout connecting to the workers (default --http-timeout), then 502"),
    O("http-websockets", kind="flag",
      help="the --http router relays WebSocket upgrades: the request and the workers' 101 pass unchanged, "
           "then bytes are spliced both ways until a side closes (idle --http-timeout); without it, as in "
           "uWSGI, an upgrade is answered and the connection closed"),
    O("http-auto-chunked", kind="flag",
      help="accepted for compatibility: always on here: the --http router chunks a response without Content-Length "
           "for an HTTP/1.1 keep-alive client (an HTTP/1.0 one gets it close-delimited)"),
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
    O("so-keepalive", kind="flag", help="enable TCP keep-alive probes (SO_KEEPALIVE) on accepted connections"),
    O("tcp-nodelay", kind="flag",
      help="accepted for compatibility: always on here: every TCP socket (and so every accepted connection) has TCP_NODELAY"),
    O("thunder-lock", kind="flag",
      help="accepted for compatibility: always on here: the listening sockets are in each loop's epoll with "
           "EPOLLEXCLUSIVE, so a connection wakes one worker, not all of them"),
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
    O("thread-stacksize", kind="int", default=0, metavar="KB",
      aliases=("threads-stacksize", "thread-stack-size", "threads-stack-size"),
      help="the stack size of each worker's --threads loop threads, in KB (default: the system's, usually "
      "8192; at least 32). Only the pages a thread touches cost memory, so this bounds address space "
      "(--limit-as, --reload-on-as), not RSS; deep C recursion in a request (Python calling Lua calling "
      "Python...) needs room"),
    O("enable-threads", "T", kind="flag", help="accepted for compatibility: the GIL is always managed (threads need no switch)"),
    O("async", kind="int", default=1, help="run N cooperative async cores per worker"),
    O("lazy-apps", kind="flag", help="load apps in each worker after fork instead of in the master"),
    O("lazy", kind="flag", help="same as --lazy-apps"),
    O("single-interpreter", "i", kind="flag",
      help="accepted for compatibility: always the case here: each process runs one Python interpreter (no sub-interpreters)"),
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
    O("harakiri-graceful-timeout", kind="int", default=0, metavar="SECS",
      help="on harakiri, send --harakiri-graceful-signal first and SIGKILL the worker only if it is "
           "still there SECS later (0: SIGKILL at once)"),
    O("harakiri-graceful-signal", kind="int", default=15, metavar="SIGNUM",
      help="the signal (a number) of a graceful harakiri attempt (default 15, SIGTERM)"),
    O("max-requests", "R", kind="int", default=0,
      help="recycle a worker after N requests, but never before it has run --min-worker-lifetime "
           "(10 s by default: set that to 0 to recycle at once)"),
    O("reload-on-rss", kind="int", default=0, metavar="MB", help="recycle a worker whose RSS exceeds MB after a request"),
    O("evil-reload-on-rss", needs_master=True, kind="int", default=0, metavar="MB", help="the master kills a worker whose RSS exceeds MB"),
    O("reload-on-as", kind="int", default=0, metavar="MB",
      help="recycle a worker whose address space (VSZ) exceeds MB after a request"),
    O("evil-reload-on-as", needs_master=True, kind="int", default=0, metavar="MB",
      help="the master kills a worker whose address space (VSZ) exceeds MB"),
    O("worker-reload-mercy", kind="int", default=60, help="seconds a worker may take to stop gracefully before being killed"),
    O("reload-mercy", kind="int", default=60, help="seconds to wait for workers on a reload"),
    O("mule-reload-mercy", kind="int", default=60, metavar="SECS",
      help="seconds a mule may take to stop on a reload or a stop before being killed"),
    O("touch-reload", needs_master=True, kind="str", multi=True, help="gracefully reload when FILE is modified or touched"),
    O("touch-workers-reload", needs_master=True, kind="str", multi=True, metavar="FILE",
      help="gracefully reload only the workers (the master fifo's `w`) when FILE is modified or touched"),
    O("touch-chain-reload", needs_master=True, kind="str", multi=True, metavar="FILE",
      help="chain reload the workers (the master fifo's `c`: one after the other) when FILE is modified or touched"),
    O("die-on-term", kind="flag", help="accepted for compatibility: SIGTERM always stops gracefully here"),
    O("exit-on-reload", kind="flag", help="stop instead of reloading on SIGHUP"),
    O("min-worker-lifetime", kind="int", default=10, metavar="SECS",
      help="a worker is recycled by --max-requests / --reload-on-rss / --reload-on-as only once it has run SECS"),
    O("reaper", "r", kind="flag",
      help="after each request, the worker reaps (waitpid(-1)) the children its app left as zombies"),
    O("umask", kind="str", metavar="MODE", help="set the process umask (octal, e.g. 022) at start-up"),
    O("no-orphans", kind="flag", aliases=("no-orphan",), help="workers exit when the master dies"),

    # --- logging -----------------------------------------------------------------------------
    O("logto", kind="str", help="log to FILE (or udp ADDR)"),
    O("logto2", kind="str", help="log to FILE after privileges drop"),
    O("log-format", kind="str", aliases=("logformat",), help="request log line format with %(var) names"),
    O("log-format-json", kind="flag", help="log requests as one JSON object per line"),
    O("disable-logging", "L", kind="flag", help="disable request logging"),
    O("log-4xx", kind="flag", help="log 4xx responses even with --disable-logging"),
    O("log-5xx", kind="flag", help="log 5xx responses even with --disable-logging"),
    O("log-slow", kind="int", default=0, metavar="MSECS", help="log requests slower than MSECS even with --disable-logging"),
    O("log-date", kind="optional", const="", metavar="[FORMAT]", aliases=("logdate", "log-prefix"),
      help="prefix the server's log lines (not request lines) with the date: ctime, or a strftime FORMAT "
           "(--log-prefix TEXT is the same option in uWSGI: TEXT goes through strftime)"),
    O("memory-report", "m", kind="flag", help="add rss/vsz to request log lines"),
    O("log-zero", kind="flag", help="log responses without a body even with --disable-logging"),
    O("log-big", kind="size", default=0, metavar="BYTES", help="log responses of BYTES or more even with --disable-logging"),
    O("log-ioerror", kind="flag", help="log requests whose client went away (a failed write) even with --disable-logging"),
    O("log-sendfile", kind="str", metavar="BOOL",
      help="log requests whose body went out by sendfile (static files, wsgi.file_wrapper) even with "
           "--disable-logging (their lines say \"via sendfile()\" or \"via offload()\" in any case); "
           "takes a value as in uWSGI: --log-sendfile 1 (false/off/no/0 turn it off)"),
    O("log-micros", kind="flag", help="request lines report the response time in microseconds instead of milliseconds"),
    O("log-x-forwarded-for", kind="flag", help="request lines show the X-Forwarded-For header as the client address"),
    O("logformat-strftime", kind="flag", aliases=("log-format-strftime",),
      help="%(ftime) in --log-format uses --log-date's strftime format"),
    O("log-master", needs_master=True, kind="flag",
      help="delegate logging to the master: every process's output goes through a thread of the master "
           "(implied by --logger, --req-logger, --log-maxsize, --touch-logrotate, ...)"),
    O("threaded-logger", needs_master=True, kind="flag", help="--log-master (its writes are always in a thread here)"),
    O("log-master-bufsize", kind="size", default=8192, metavar="BYTES",
      help="socket buffer of the log master (at least this; messages are never truncated here)"),
    O("logger", needs_master=True, kind="str", multi=True, metavar="[NAME ]PLUGIN[:ARGS]",
      help="log to file:PATH, fd:N, stdio, syslog[:IDENT[,FACILITY]], socket:ADDR[,PREFIX], "
           "rsyslog:ADDR[,IDENT[,PRI]] or pipe:COMMAND (repeatable: each line to every logger; a NAME "
           "makes it get only the lines --log-route sends it)"),
    O("req-logger", needs_master=True, kind="str", multi=True, aliases=("logger-req",), metavar="[NAME ]PLUGIN[:ARGS]",
      help="log request lines to this logger (and no longer to the others); same plugins as --logger"),
    O("worker-logger", kind="str", multi=True, metavar="[NAME ]PLUGIN[:ARGS]",
      help="--logger without turning --master on: without a master (one worker) the log thread runs in "
           "the worker itself, as uWSGI's single-worker loggers; with a master, in the master as --logger"),
    O("worker-logger-req", kind="str", multi=True, metavar="[NAME ]PLUGIN[:ARGS]",
      help="--req-logger without turning --master on (see --worker-logger)"),
    O("worker-log-encoder", kind="str", multi=True, metavar="NAME[:LOGGER] [ARGS]",
      help="--log-encoder without turning --master on (for --worker-logger)"),
    O("worker-log-req-encoder", kind="str", multi=True, metavar="NAME[:LOGGER] [ARGS]",
      help="--log-req-encoder without turning --master on (for --worker-logger-req)"),
    O("log-syslog", needs_master=True, kind="optional", const="", multi=True, metavar="[IDENT[,FACILITY]]",
      help="log to syslog (--logger syslog:IDENT,FACILITY)"),
    O("log-socket", needs_master=True, kind="str", multi=True, metavar="ADDR",
      help="send log lines as datagrams to ADDR (--logger socket:ADDR)"),
    O("log-maxsize", needs_master=True, kind="size", default=0, metavar="BYTES",
      help="rotate the log file (--logto/--daemonize) once it is over BYTES"),
    O("log-backupname", kind="str", metavar="NAME", help="a rotated log file is renamed NAME (default FILE.<unix time>)"),
    O("log-reopen", kind="flag", help="reopen the log file on a reload (default: keep the open one)"),
    O("log-truncate", kind="flag", help="truncate the log file on start-up"),
    O("touch-logrotate", needs_master=True, kind="str", multi=True, metavar="FILE",
      help="rotate the log file when FILE is modified or touched"),
    O("touch-logreopen", needs_master=True, kind="str", multi=True, metavar="FILE",
      help="reopen the log file (and file loggers) when FILE is modified or touched"),
    O("logfile-chown", kind="flag", help="chown the log files to --uid/--gid"),
    O("logfile-chmod", kind="str", metavar="MODE", help="chmod the log files to MODE (three octal digits)"),
    O("log-encoder", needs_master=True, kind="str", multi=True, metavar="NAME[:LOGGER] [ARGS]",
      help="encode log lines: prefix TEXT, suffix TEXT, nl, format TEMPLATE, json TEMPLATE (${msg}, "
           "${msgnl}, ${unix}, ${micros}, ${millis}, ${strftime:FMT}), gzip, compress"),
    O("log-req-encoder", needs_master=True, kind="str", multi=True, metavar="NAME[:LOGGER] [ARGS]",
      help="encode request log lines (as --log-encoder)"),
    O("log-drain", needs_master=True, kind="str", multi=True, metavar="REGEXP", help="drop log lines matching REGEXP"),
    O("log-filter", needs_master=True, kind="str", multi=True, metavar="REGEXP", help="keep only log lines matching REGEXP"),
    O("log-route", needs_master=True, kind="str", multi=True, metavar="NAME REGEXP",
      help="send log lines matching REGEXP to the logger NAME (only there)"),
    O("log-req-route", needs_master=True, kind="str", multi=True, metavar="NAME REGEXP",
      help="send request lines matching REGEXP to the logger NAME (only there)"),
    O("loggers-list", kind="flag", aliases=("logger-list",), help="list the logger plugins at start-up"),
    O("rsyslog-packet-size", kind="int", default=1024, metavar="BYTES", help="rsyslog logger: max datagram size"),
    O("rsyslog-split-messages", kind="flag", help="rsyslog logger: split long lines over several datagrams"),

    # --- stats -----------------------------------------------------------------------------
    O("stats", needs_master=True, kind="str", aliases=("stats-server",), metavar="ADDR", help="serve the stats JSON on ADDR"),
    O("stats-http", needs_master=True, kind="flag", help="frame the stats JSON as an HTTP response"),
    O("stats-minified", needs_master=True, kind="flag", help="minify the stats JSON"),

    # --- responses ------------------------------------------------------------------------
    O("add-header", kind="str", multi=True, metavar='"NAME: VALUE"',
      help="add a header to every response (after the app's; repeatable)"),
    O("del-header", kind="str", multi=True, aliases=("rem-header",), metavar="NAME",
      help="remove the app's NAME header (any case) from every response (repeatable; --add-header's stay)"),
    O("disable-write-exception", kind="flag",
      help="accepted for compatibility: always the case here: a write to a client that went away "
           "raises nothing in the app (its body is dropped; a generator is closed, as in uWSGI)"),
    O("ignore-write-errors", kind="flag",
      help="do not log failed writes to a client (one that went away): the request just ends"),
    O("ignore-sigpipe", kind="flag",
      help="accepted for compatibility: always the case here: SIGPIPE is ignored in every worker, "
           "never reported"),
    O("vhost", kind="flag",
      help="virtual hosting: a request runs the app mounted at HOST|SCRIPT_NAME (HOST: the Host header, "
           "else SERVER_NAME; --mount 'example.com|=app.py'), else the default app; request lines "
           "start with HOST"),
    O("vhost-host", kind="flag", help="the same as --vhost (uWSGI keys on the Host header in both)"),

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
