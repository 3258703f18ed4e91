"""wait_listening: every process of a SO_REUSEPORT group listens, not just the first."""

import socket
import subprocess
import sys

import pytest

from caas_sim.scenarios.listening import wait_listening

# Binds the port at once, listens only when told on stdin, then waits for stdin to close.
LISTENER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
print("bound", flush=True)
if sys.stdin.readline().strip() == "listen":
    s.listen()
    print("listening", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def group():
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    procs = [subprocess.Popen([sys.executable, "-c", LISTENER, str(port)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        assert p.stdout.readline().strip() == "bound"
    yield port, procs
    for p in procs:
        p.kill()
        p.wait()
    holder.close()


def _tell(proc, line: str) -> None:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def test_one_listener_of_two_is_not_enough(group):
    port, procs = group
    _tell(procs[0], "listen")
    assert procs[0].stdout.readline().strip() == "listening"
    with pytest.raises(RuntimeError, match="did not listen"):
        wait_listening(procs, port, timeout=0.5)
    _tell(procs[1], "listen")
    assert procs[1].stdout.readline().strip() == "listening"
    wait_listening(procs, port, timeout=10)


def test_a_process_that_exits_is_reported(group):
    port, procs = group
    _tell(procs[0], "quit")
    procs[0].stdin.close()
    procs[0].wait(timeout=10)
    with pytest.raises(RuntimeError, match="exited at start"):
        wait_listening(procs, port, timeout=10, what="server")
