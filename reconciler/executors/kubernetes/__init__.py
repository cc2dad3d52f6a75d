"""The Kubernetes executor (DESIGN §5): one batch/v1 Job per run, leader election on a Lease.

The only package that imports the official `kubernetes` client. Its modules:

- `manifests` (pure): the Job and ConfigMap a run becomes, what `reconciler render` prints;
  `clone`, the init container that clones a repository into the pod;
- `labels`: the labels and annotations that let a restarted daemon adopt its Jobs;
- `phases` (pure): a run's state from its Job and pods;
- `executor`: `KubernetesExecutor`, the `Executor` protocol over the client, with `informer`
  and `caches` (list + watch caches per namespace, which know a namespace RBAC keeps the daemon
  out of), `jobs` (creating, adopting, failing, recording, deleting Jobs),
  `runs`, `podlogs` and `secretmask` (secret values masked in logs);
- `leader`: `LeaderElector`, leader election on a coordination.k8s.io/v1 Lease;
- `client`: connecting (in-cluster or kubeconfig) and the error vocabulary;
- `stackaccess` (pure) and `access`: the account, state Secret, lock Lease, Role and
  RoleBinding the daemon makes for a stack, so its pod reaches its own state and nothing else;
- `stackstate` and `statestore`: what stack pods run (`programs/pod_entry.py`), which keeps the
  state of a module without a backend in that Secret, under that Lease, around the stack runner;
- `adapter`: the flags, settings and log lookup the command line finds through
  `executors/registry.py`, with no Kubernetes client loaded.

This file imports none of them, so `render` and stack pods load only what they use.
"""
