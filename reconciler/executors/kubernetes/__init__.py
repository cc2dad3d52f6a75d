"""The Kubernetes executor (DESIGN §5): one batch/v1 Job per run, leader election on a Lease.

The only package that imports the official `kubernetes` client. Its modules:

- `manifests`: pure, the Job and ConfigMap a run becomes (what `reconciler render` prints);
- `labels`: the labels and annotations that let a restarted daemon adopt its Jobs;
- `phases`: pure, a run's state from its Job and pods;
- `informer`: list + watch caches, resynced after a dropped watch;
- `executor`: `KubernetesExecutor`, the `Executor` protocol over the client;
- `leader`: `LeaderElector`, a coordination.k8s.io/v1 Lease;
- `stackstate`: the entry point of stack pods, which gives modules without a backend the
  `kubernetes` backend before it starts the stack runner.

This file imports none of them, so `render` and the stack pods do not load the client.
"""
