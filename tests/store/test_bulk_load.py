from __future__ import annotations

import gc
import threading

from cache_proxy.store.bulk_load import bulk_load


def test_the_collector_pauses_for_the_load_and_skips_what_it_loaded_afterwards() -> None:
    assert gc.isenabled()
    try:
        with bulk_load():
            assert not gc.isenabled()
            loaded = [{"entry": i} for i in range(1000)]  # long-lived containers
        assert gc.isenabled()
        assert gc.get_freeze_count() >= len(loaded)  # frozen: full passes skip them
    finally:
        gc.unfreeze()  # other tests' garbage must stay collectable


def test_overlapping_loads_keep_the_collector_paused_until_the_last_one_ends() -> None:
    second_inside, first_done = threading.Event(), threading.Event()
    seen: list[bool] = []

    def second() -> None:
        with bulk_load():
            second_inside.set()
            first_done.wait(10)
            seen.append(gc.isenabled())  # the first load ended; this one still runs

    try:
        with bulk_load():
            worker = threading.Thread(target=second)
            worker.start()
            assert second_inside.wait(10)
        first_done.set()
        worker.join(10)
        assert seen == [False] and gc.isenabled()
    finally:
        gc.unfreeze()
