"""A plugin with a misspelled hook, to prove the kernel reports it."""


def kernel_step():  # meant: kernel_steps
    return []
