# subprocess.run of `sort`, fed and read through pipes; then a program that
# writes straight to our stdout.
import subprocess

r = subprocess.run(["sort"], input="pear\napple\nfig\n", capture_output=True, text=True)
print("sorted:", r.stdout.split(), "code", r.returncode)
subprocess.run(["echo", "echo writes this itself"])
r = subprocess.run(["sh", "-c", "exit 3"])
print("sh exited with", r.returncode)
