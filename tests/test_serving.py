"""``egg:syncserver#waitress``: host and port from the command line, a taken port in one sentence."""

import socket

import pytest

from syncserver.serving import waitress_server


@pytest.fixture
def taken_port():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_a_taken_port_stops_with_one_sentence(taken_port):
    with pytest.raises(SystemExit) as stopped:
        waitress_server({"__file__": "/srv/my.ini"}, host="127.0.0.1", port=str(taken_port))
    message = str(stopped.value)
    assert message == (f"syncserver: cannot listen on 127.0.0.1:{taken_port}: the port is in "
                       "use (is another server running?); choose another port: "
                       "paster serve /srv/my.ini port=NUMBER")


def test_the_command_line_port_is_used_when_the_section_lost_its_own(taken_port):
    # "paster serve x.ini port=N": PasteDeploy removes port from the section, passes N here.
    with pytest.raises(SystemExit, match=f":{taken_port}:"):
        waitress_server({"port": str(taken_port)}, host="127.0.0.1")
    # The section's own value wins when PasteDeploy left it there (no command-line value).
    assert callable(waitress_server({}, host="127.0.0.1", port="0"))


def test_an_address_this_machine_lacks_is_said_so():
    with pytest.raises(SystemExit, match="no such address"):
        waitress_server({}, host="192.0.2.1", port="0")  # TEST-NET-1: never local


def test_bad_options_are_one_sentence():
    with pytest.raises(SystemExit, match=r"\[server:main\] is not usable"):
        waitress_server({}, host="127.0.0.1", port="0", no_such_option="1")


def test_waitress_leaves_forwarded_headers_to_the_application(monkeypatch):
    """waitress would drop X-Forwarded-* from every peer: global.trusted_proxies decides."""
    import waitress

    served = {}

    class Server:
        def __init__(self, app, **options):
            served.update(options)
            self.task_dispatcher = waitress.task.ThreadedTaskDispatcher()

        def print_listen(self, format_string):
            pass

        def run(self):
            pass

    monkeypatch.setattr(waitress, "create_server", Server)
    waitress_server({}, host="127.0.0.1", port="0")("app")
    assert served["clear_untrusted_proxy_headers"] == "false"
    served.clear()
    waitress_server({}, host="127.0.0.1", port="0", trusted_proxy="10.0.0.1",
                    trusted_proxy_headers="x-forwarded-proto")("app")
    assert "clear_untrusted_proxy_headers" not in served


def test_a_bad_queue_warning_interval_is_one_sentence():
    with pytest.raises(SystemExit, match="queue_warning_seconds must be a number"):
        waitress_server({}, host="127.0.0.1", port="0", queue_warning_seconds="often")


def test_queue_warnings_held_back_make_no_log_record():
    """Only the warnings let through reach the logger (and build a record)."""
    import logging

    from syncserver.serving import OncePerInterval

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("tests.queue-warnings")
    logger.propagate = False
    logger.addHandler(Keep())
    now = [100.0]
    warnings = OncePerInterval(logger, 10, clock=lambda: now[0])
    for depth in range(1, 101):
        warnings.warning("Task queue depth is %d", depth)
    assert records == ["Task queue depth is 1"]
    now[0] += 10
    warnings.warning("Task queue depth is %d", 7)
    assert records[1] == "Task queue depth is 7 (99 more since the last one logged)"
