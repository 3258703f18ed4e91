"""Logs a team can ship: JSON or text lines, the correlation id on each, secrets masked."""

import asyncio
import io
import json
import logging
import socket
import subprocess
import sys
import urllib.request

from caas_sim import logs


def test_json_lines_carry_the_correlation_id_and_never_a_secret():
    out = io.StringIO()
    logs.configure(level="INFO", fmt="json", stream=out)
    try:
        token = logs.CORRELATION.set("cor-42")
        logging.getLogger("caas_core.test").warning(
            "calling %s with Bearer sk-live-123 and whsec_c2VjcmV0 at %s", "iot", "postgresql://u:pa55@db/x")
        logs.CORRELATION.reset(token)
        logging.getLogger("caas_core.test").info("no request")
    finally:
        logging.getLogger().handlers.clear()
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["correlationId"] == "cor-42" and first["level"] == "WARNING"
    assert "sk-live-123" not in first["message"] and "c2VjcmV0" not in first["message"]
    assert "pa55" not in first["message"] and "postgresql://u:***@db/x" in first["message"]
    assert first["message"].startswith("calling iot with Bearer ***")
    assert second["correlationId"] is None


def test_text_lines_show_the_correlation_id():
    out = io.StringIO()
    logs.configure(level="DEBUG", fmt="text", stream=out)
    try:
        logs.CORRELATION.set("cor-7")
        logging.getLogger("x").debug("hello")
    finally:
        logging.getLogger().handlers.clear()
        logs.CORRELATION.set(None)
    assert " DEBUG x [cor-7] hello" in out.getvalue()


def test_serve_with_an_access_log_in_json_names_each_request_by_its_correlation_id():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "caas_sim.scenarios.cli", "serve", "iot", "--port", str(port),
                               "--log-format", "json", "--access-log"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "SERVICE" in server.stdout.readline()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/__admin/health",
                                         headers={"X-Correlation-Id": "trace-abc"})
        urllib.request.urlopen(request, timeout=10).read()
        bad = urllib.request.Request(f"http://127.0.0.1:{port}/vehicles/NOPE/status",
                                     headers={"X-Correlation-Id": "trace-def"})
        try:
            urllib.request.urlopen(bad, timeout=10)
        except urllib.error.HTTPError as exc:
            assert exc.code == 400
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == logs.ACCESS_LOGGER]
    assert any("GET /vehicles/NOPE/status" in line["message"] and line["correlationId"] == "trace-def"
               for line in access), err


async def test_a_request_aiohttp_cannot_parse_is_one_info_line_not_an_error_with_its_traceback():
    from aiohttp import web

    out = io.StringIO()
    logs.configure(level="INFO", fmt="text", stream=out)
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Probe: a\x00b\r\n\r\n")  # what a fuzzer sends
        status = await reader.readline()
        writer.close()
        logging.getLogger("aiohttp.server").error("a server's own error", exc_info=RuntimeError("boom"))
    finally:
        await runner.cleanup()
        logging.getLogger().handlers.clear()
    assert status.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400"))
    lines = out.getvalue().splitlines()
    [unparsable] = [line for line in lines if "Invalid header value char" in line]
    assert " INFO aiohttp.server " in unparsable and unparsable.endswith("400 Invalid header value char: b'X-Probe: a\\x00b' ^")
    assert "Traceback" not in out.getvalue()
    assert " ERROR aiohttp.server [-] a server's own error\nRuntimeError: boom" in out.getvalue()  # kept as it was
