"""Python storage3, unchanged, against Ferrobase. Env: FB_URL, FB_SERVICE."""
import os
import tempfile

from storage3 import SyncStorageClient

url = os.environ["FB_URL"] + "/storage/v1"
key = os.environ["FB_SERVICE"]
storage = SyncStorageClient(url, {"apikey": key, "Authorization": f"Bearer {key}"})

storage.create_bucket("py", options={"public": False})
assert [b.id for b in storage.list_buckets()] == ["py"]
assert storage.get_bucket("py").public is False
py = storage.from_("py")
with tempfile.NamedTemporaryFile(suffix=".txt", delete=False) as f:
    f.write(b"hello from python")
    path = f.name
py.upload("dir/hello.txt", path, {"content-type": "text/plain"})
py.upload("bytes.bin", b"\x00\x01\x02", {"content-type": "application/octet-stream"})
assert py.download("dir/hello.txt") == b"hello from python"
assert py.download("bytes.bin") == b"\x00\x01\x02"
py.update("bytes.bin", b"\x03", {"content-type": "application/octet-stream"})
assert py.download("bytes.bin") == b"\x03"
names = [e["name"] for e in py.list("dir")]
assert names == ["hello.txt"], names
signed = py.create_signed_url("dir/hello.txt", 60)
import urllib.request

assert urllib.request.urlopen(signed["signedURL"]).read() == b"hello from python"
py.move("dir/hello.txt", "moved.txt")
py.copy("moved.txt", "copied.txt")
assert py.download("copied.txt") == b"hello from python"
try:
    py.download("nope.txt")
    raise AssertionError("download of a missing object must fail")
except Exception as e:  # storage3 raises StorageException
    assert "not found" in str(e).lower() or "404" in str(e), e
removed = py.remove(["moved.txt", "copied.txt", "bytes.bin"])
assert len(removed) == 3, removed
storage.empty_bucket("py")
storage.delete_bucket("py")
print("storage3 OK")
