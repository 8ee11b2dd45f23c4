-- A line-echo server on a raw TCP socket, in Lua (the Python twin is raw_echo.py).
--
--   ./uwsgi --raw-socket 127.0.0.1:7000 --raw-modifier1 6 --lua-raw examples/raw_echo.lua --async 64
--   printf 'hello\nworld\n' | nc -q1 127.0.0.1 7000
--
-- Each connection gets every line it sends back; it ends when the client closes (or stays
-- silent past --socket-timeout). The handler runs in a coroutine: a recvline that waits
-- suspends only its own core, so under --async N one worker serves N connections at once.

local MAX_LINE = 4 * 1024 * 1024

return function(sock)
  while true do
    local line, err = sock:recvline(MAX_LINE)
    if not line then
      if err == "line too long" then sock:sendall("line too long\n") end
      return
    end
    local ok = sock:sendall(line .. "\n")
    if not ok then return end
  end
end
