"""Helpers of the end-to-end tests (tests/test_e2e.py): a local stack per environment, on loopback only.

Per environment: kflowgen's own control plane (etcd + kube-apiserver, `kflowgen.checks.server.ControlPlane`), a
kube-controller-manager with the controllers a cluster needs to run Jobs (node lifecycle, jobs, garbage collection,
quota, volumes...), kube-scheduler, kwok with fake GPU nodes made from `specs/platform.yaml`, and real Argo CD
(repo-server and application-controller run out of cluster, with Redis) syncing a local git copy of the repository
through a `file://` URL; where the platform spec queues training, Kueue's controller (e2e.kueue); where it trains with
Kubeflow Trainer, Trainer's and JobSet's controllers and its runtimes (e2e.trainer). Nothing here mocks Kubernetes,
Argo CD, Kueue, Trainer or JobSet; kwok only plays the kubelet (pods become Running and, for Jobs, Succeeded).

Binaries: `make tools-e2e` (.tools/bin: argocd, kube-scheduler, kwok, kueue, jobset, trainer-controller-manager; kwok's
Stage files in .tools/share/kwok, Kueue's and JobSet's CRD and webhook kustomizations and Trainer's webhook
configuration and runtimes in .tools/share/{kueue,jobset,trainer}; redis-server from Debian's packages). Every process is started in its own process group, with the kernel's
parent-death signal, and is killed by `Stack.stop()`, which runs from the pytest fixture's finalizer, from `atexit`
and on SIGTERM/SIGHUP.
"""
