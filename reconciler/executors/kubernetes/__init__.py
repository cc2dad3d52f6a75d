"""The Kubernetes executor (DESIGN §5): one batch/v1 Job per run, leader election on a Lease.

The only package that imports the official `kubernetes` client. Its modules:

- `manifests` (pure): the Job and ConfigMap a run becomes, what `reconciler render` prints;
  `clone`, the init container that clones a repository into the pod;
- `labels`: the labels and annotations that let a restarted daemon adopt its Jobs;
- `phases` (pure): a run's state from its Job and pods;
- `executor`: `KubernetesExecutor`, the `Executor` protocol over the client, with `informer`
  (list + watch caches), `jobs` (creating, adopting, failing, recording, deleting Jobs),
  `runs`, `podlogs` and `secretmask` (secret values masked in logs);
- `leader`: `LeaderElector`, leader election on a coordination.k8s.io/v1 Lease;
- `client`: connecting (in-cluster or kubeconfig) and the error vocabulary;
- `stackstate`: the entry point of stack pods, which gives a module without a backend the
  engine's `kubernetes` backend, then starts the stack runner.

This file imports none of them, so `render` and stack pods load only what they use.
"""
