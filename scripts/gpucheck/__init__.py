"""``scripts/gpu-check.sh``: check a GPU workstation's multi-model serving end to end, one PASS/FAIL line each.

``checks.py`` drives a gateway over HTTP (two models at once, a replica per GPU, a
tensor-parallel group, the fit refusal, load on demand, keep_alive unload, sleep/wake with its
figures); ``launch.py`` starts the gateway it checks (the repo's ``llf-inference``, or with
``--fake`` the same app over a fake NVML inventory and the fake engine: ``fakegateway.py``);
``__main__.py`` ties them together and sets the exit code.
"""
