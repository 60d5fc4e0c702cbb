"""The JACK test server helper itself (tests/jackserver.py) on names of every awkward length.

jack2's command-line tools copy a `-s NAME` argument one byte short; at 24 and 40 characters the
stray NUL lands on malloc's bookkeeping and jack_lsp aborts. The helper names the server through
JACK_DEFAULT_SERVER instead. Before that fix the 11th server of a test process (a 24-character
name) could not list its ports, and every live test after it timed out waiting for the engine.
"""
from __future__ import annotations

import pytest
from jackserver import JackServer

pytestmark = pytest.mark.jack


@pytest.mark.parametrize("length", [23, 24, 40])
def test_ports_and_readiness_for_any_name_length(length: int) -> None:
    name = ("mcp-len-" + "x" * 64)[:length]
    with JackServer(name, set_env=False) as server:
        assert server.is_running()
        ports = server.ports()
    assert "system:capture_1" in ports and "system:playback_1" in ports, ports
