"""Issue 31, cases 7, 14, 18 and 19: the simulated device keeps CuPy's rules for recorded
steps with data-dependent shapes, counts printing as a copy to the host, keeps each
asyncio task's device scope its own, and copies arrays and models on the device."""
import asyncio
import threading

import numpy

import xpnet as xn

SIM = xn.Device("sim")
SIM1 = xn.Device("sim:1")


def _on(device, values):
    return xn.to_device(numpy.asarray(values), device)


# -- 31.18: the device scope is per context ----------------------------------------------

def test_use_device_in_two_asyncio_tasks_keeps_each_tasks_device():
    both_in = {}

    async def task(n, mine, other):
        with xn.use_device(f"sim:{n}") as dev:
            y = xn.to_device(numpy.full(3, float(n + 1)), dev)
            mine.set()
            await other.wait()  # the other task has entered its own device meanwhile
            both_in[n] = xn.current_device()
            z = (y * 2 + 1).sum()  # raw operations on this task's device
            await asyncio.sleep(0)
            return float(z), xn.device_of(z)

    async def main():
        e0, e1 = asyncio.Event(), asyncio.Event()
        return await asyncio.gather(task(0, e0, e1), task(1, e1, e0))

    (r0, d0), (r1, d1) = asyncio.run(main())
    assert (r0, d0, r1, d1) == (9.0, SIM, 15.0, SIM1)
    assert both_in == {0: SIM, 1: SIM1}


def test_a_thread_still_starts_on_sim0_whatever_the_caller_entered():
    a = _on(SIM1, [1.0])
    seen = []

    def work():
        seen.append(xn.current_device())
        try:
            a + 1
        except ValueError as exc:
            seen.append(str(exc))

    with xn.use_device(SIM1):
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        assert float((a + 1).sum()) == 2.0  # this thread's scope is untouched
    assert seen[0] != SIM1 and "sim:1 while sim:0 is the current device" in seen[1]
