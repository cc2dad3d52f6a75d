"""The only package that talks to Git (pygit2): remotes, trees at a commit, status commits."""
