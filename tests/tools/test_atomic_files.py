"""Saving is atomic and safe: symlinks, non-regular targets, clean-up, stale temporaries,
errors naming the user's path, capped npz headers, and kill -9 in the middle of saves."""
import io
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

from nexec import Input, Model, layers
from nexec.errors import SavedModelError
from nexec.io import atomic_write, sweep_stale_temporaries
from nexec.saving import load_model


def _model(units=3):
    x = Input(shape=(4,))
    return Model(x, layers.Dense(units)(x))


def _temporaries(folder):
    return [n for n in os.listdir(folder) if n.startswith(".nexec-")]


def test_a_save_through_a_symlink_updates_the_target_and_keeps_the_link(tmp_path):
    real = tmp_path / "real" / "m.npz"
    real.parent.mkdir()
    _model(3).save(str(real))
    link = tmp_path / "link.npz"
    link.symlink_to(real)
    _model(5).save(str(link))
    assert link.is_symlink() and os.path.realpath(link) == str(real)
    assert load_model(str(real)).output.shape == (None, 5)
    assert not _temporaries(tmp_path) and not _temporaries(real.parent)


@pytest.mark.parametrize("kind", ["directory", "fifo", "device"])
def test_non_regular_targets_are_refused_and_left_alone(tmp_path, kind):
    if kind == "directory":
        target = str(tmp_path)
    elif kind == "fifo":
        target = str(tmp_path / "fifo")
        os.mkfifo(target)
    else:
        target = "/dev/null"
    before = os.stat(target)
    with pytest.raises(OSError, match="directory|not a regular file") as info:
        _model().save(target)
    assert info.value.filename == target
    after = os.stat(target)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert not _temporaries(tmp_path)


def test_errors_name_the_users_path_and_leave_no_temporary(tmp_path):
    missing = str(tmp_path / "no" / "such" / "m.npz")
    with pytest.raises(FileNotFoundError) as info:
        _model().save(missing)
    assert info.value.filename == missing and ".tmp" not in str(info.value)

    def failing(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    path = str(tmp_path / "full.npz")
    with pytest.raises(OSError, match="No space") as info:
        atomic_write(path, failing)
    assert info.value.filename == path and not os.path.exists(path)

    def interrupted(f):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, interrupted)
    assert not _temporaries(tmp_path)


def test_stale_temporaries_are_swept_by_the_next_save(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    by_dead = tmp_path / f".nexec-{int(dead.stdout)}-abc.tmp"
    old = tmp_path / ".nexec-zz91.tmp"  # the old naming, without a pid
    mine = tmp_path / f".nexec-{os.getpid()}-live.tmp"  # a save running in this process
    for p in (by_dead, old, mine):
        p.write_bytes(b"x" * 100)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    _model().save(str(tmp_path / "m.npz"))
    assert _temporaries(tmp_path) == [mine.name]
    assert sweep_stale_temporaries(str(tmp_path), max_age_s=0.0) == [str(mine)]


def _forged(tmp_path, shape, descr="<f8"):
    path = str(tmp_path / "m.npz")
    _model().save(path)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": descr, "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("extra.npy", header.getvalue() + b"\0" * 64)
    return path


def test_an_npz_header_declaring_more_than_the_file_holds_is_refused(tmp_path):
    path = _forged(tmp_path, (2 ** 31,))  # 16 GiB declared in a file of a few KB
    with pytest.raises(SavedModelError, match="extra.npy.*17179869184 bytes"):
        load_model(path)


def test_a_zip_member_declaring_a_huge_size_is_refused(tmp_path):
    path = str(tmp_path / "m.npz")
    _model().save(path)
    data = bytearray(open(path, "rb").read())
    end = data.rfind(b"PK\x05\x06")
    first = data.find(b"PK\x01\x02")  # first central-directory entry: its uncompressed size
    assert 0 <= first < end
    data[first + 24:first + 28] = (2 ** 32 - 1).to_bytes(4, "little")
    open(path, "wb").write(bytes(data))
    with pytest.raises(SavedModelError):
        load_model(path)


_SAVER = textwrap.dedent("""
    import sys
    import numpy as np
    from nexec import Input, Model, layers
    x = Input(shape=(256,))
    model = Model(x, layers.Dense(256)(layers.Dense(512)(x)))
    print("ready", flush=True)
    k = 0
    while True:
        k += 1
        for w in model.weights:
            w[...] = k
        model.save(sys.argv[1])
""")


def test_kill_9_during_saves_leaves_the_old_or_the_new_file_and_no_temporary(tmp_path):
    path = str(tmp_path / "m.npz")
    pick = random.Random(3)
    env = {**os.environ, "NUMBA_DISABLE_JIT": "0"}
    for trial in range(5):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, path], stdout=subprocess.PIPE,
                                env=env)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(pick.uniform(0.3, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if os.path.exists(path):
            model = load_model(path)
            k = {float(w.flat[0]) for w in model.weights}
            assert len(k) == 1 and all(np.all(w == w.flat[0]) for w in model.weights), trial
    assert os.path.exists(path)
    _model().save(str(tmp_path / "other.npz"))  # the next save into the folder sweeps
    assert not _temporaries(tmp_path)
