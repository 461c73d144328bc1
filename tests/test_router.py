import threading
import time

import pytest

from sleep_agent.serving.router import AdapterRouter


def test_target_follows_active_adapter():
    router = AdapterRouter("base")
    assert router.target == "base" and router.active is None
    assert router.set_active("ns@v1") is None
    assert router.target == "ns@v1"
    assert router.set_active("ns@v2") == "ns@v1"
    assert router.set_active(None) == "ns@v2"
    assert router.target == "base"


def test_request_counts_inflight_on_the_name_it_started_with():
    router = AdapterRouter("base")
    router.set_active("ns@v1")
    with router.request() as target:
        assert target == "ns@v1"
        router.set_active("ns@v2")  # a swap mid-request does not move the request
        assert router.inflight("ns@v1") == 1
        assert router.inflight("ns@v2") == 0
    assert router.inflight("ns@v1") == 0


def test_request_is_released_when_the_call_fails():
    router = AdapterRouter("base")
    with pytest.raises(RuntimeError):
        with router.request("ns@v1"):
            raise RuntimeError("boom")
    assert router.inflight("ns@v1") == 0
    assert router.wait_idle("ns@v1", timeout=0.01)


def test_wait_idle_times_out_while_requests_run_and_returns_when_they_end():
    router = AdapterRouter("base")
    entered, release = threading.Event(), threading.Event()

    def slow_request():
        with router.request("ns@v1"):
            entered.set()
            release.wait(5)

    worker = threading.Thread(target=slow_request)
    worker.start()
    entered.wait(5)
    assert router.wait_idle("ns@v1", timeout=0.05) is False
    threading.Timer(0.1, release.set).start()
    started = time.monotonic()
    assert router.wait_idle("ns@v1", timeout=5) is True
    assert time.monotonic() - started >= 0.05
    worker.join()


def test_many_threads_leave_counts_at_zero():
    router = AdapterRouter("base")
    router.set_active("ns@v1")

    def hammer():
        for _ in range(200):
            with router.request():
                pass

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert router.inflight("ns@v1") == 0
