"""Files and memory of the machine: atomic writes, bounded reads, the memory this process may use."""
