# Prints the open-file limits this program was started with.
import resource

print("nofile", *resource.getrlimit(resource.RLIMIT_NOFILE))
