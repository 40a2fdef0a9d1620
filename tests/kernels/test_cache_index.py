"""Numba's disk cache of nexec kernels stays right when several processes add to it at once."""
import multiprocessing
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba.core.caching import IndexDataCacheFile

import nexec
from nexec.kernels.cache_index import SharedIndexFile, share_cache

_PROCESSES, _KEYS = 4, 30


def _cache_file(folder, cls=SharedIndexFile):
    return cls(cache_path=str(folder), filename_base="mod.fn-1.py311", source_stamp=(1.0, 2))


def _save_many(folder, worker, start):
    cache = _cache_file(folder)
    start.wait()
    for i in range(_KEYS):
        cache.save(("sig", worker, i), f"code of {worker}/{i}".encode())


def test_processes_saving_at_once_keep_every_entry_with_its_own_data(tmp_path):
    context = multiprocessing.get_context("fork")
    start = context.Barrier(_PROCESSES)
    workers = [context.Process(target=_save_many, args=(tmp_path, w, start))
               for w in range(_PROCESSES)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    cache = _cache_file(tmp_path)
    for worker in range(_PROCESSES):
        for i in range(_KEYS):
            assert cache.load(("sig", worker, i)) == f"code of {worker}/{i}".encode()
    assert not [p for p in os.listdir(tmp_path) if ".tmp." in p]  # no temporaries left


def _data_files(folder):
    return sorted(p for p in os.listdir(folder) if p.endswith(".nbc"))


def test_a_data_file_is_named_after_its_key_not_after_the_index_it_read(tmp_path):
    """Numba numbers a new data file after the entries it read, so two processes that read
    the same index pick the same file for different signatures; a key's own name cannot."""
    alone, after = tmp_path / "alone", tmp_path / "after"
    alone.mkdir()
    after.mkdir()
    _cache_file(alone).save(("sig", "float64"), b"f64")
    _cache_file(after).save(("sig", "float32"), b"f32")
    _cache_file(after).save(("sig", "float64"), b"f64")
    _cache_file(after).save(("sig", "float32"), b"f32 again")  # the same key keeps its file
    [name] = _data_files(alone)  # float64's file: the same name, whatever came first
    assert (after / name).read_bytes() == (alone / name).read_bytes()
    assert len(_data_files(after)) == 2
    assert _cache_file(after).load(("sig", "float32")) == b"f32 again"
    # Numba's own format: an index Numba reads as its own.
    assert _cache_file(after, IndexDataCacheFile).load(("sig", "float64")) == b"f64"


def test_a_source_edit_deletes_the_stale_data_files(tmp_path):
    old = _cache_file(tmp_path)
    old.save(("sig", "float32", "old code"), b"old f32")
    old.save(("sig", "float64", "old code"), b"old f64")
    assert len(_data_files(tmp_path)) == 2
    new = SharedIndexFile(cache_path=str(tmp_path), filename_base="mod.fn-1.py311",
                          source_stamp=(3.0, 4))  # the source file changed
    assert new.load(("sig", "float32", "old code")) is None
    new.save(("sig", "float32", "new code"), b"new f32")
    assert len(_data_files(tmp_path)) == 1  # not one more file per edit
    assert new.load(("sig", "float32", "new code")) == b"new f32"
    new.save(("sig", "float64", "new code"), b"new f64")  # a current index: nothing deleted
    assert len(_data_files(tmp_path)) == 2


@pytest.mark.parametrize("refused", ["flock", "open"])
def test_a_file_system_without_locks_still_saves(tmp_path, monkeypatch, refused):
    import fcntl

    def refuse(*args):
        raise OSError(37, "No locks available")

    monkeypatch.setattr(fcntl if refused == "flock" else os, refused, refuse)
    cache = _cache_file(tmp_path)
    cache.save(("sig", "float32"), b"f32")
    assert _cache_file(tmp_path).load(("sig", "float32")) == b"f32"


def test_nexec_kernels_use_the_shared_index():
    from nexec.kernels.cpu import dense
    assert type(dense.dense_forward._cache._cache_file) is SharedIndexFile
    plain = type("NoCache", (), {})()
    assert share_cache(plain) is plain  # nothing to share: unchanged


_MODULE = textwrap.dedent("""
    import sys
    import numpy as np
    from nexec.kernels.jit import kernel

    @kernel
    def scale(x, out):
        for i in range(x.shape[0]):
            out[i] = x[i] * 3

    if __name__ == "__main__":
        dtype = sys.argv[1]
        x = np.arange(5, dtype=dtype)
        out = np.empty_like(x)
        scale(x, out)
        stats = scale.stats
        print(dtype, out.tolist(), sum(stats.cache_hits.values()),
              sum(stats.cache_misses.values()))
""")


def test_two_processes_compiling_one_kernel_at_once_leave_both_loadable(tmp_path):
    module = tmp_path / "scaled.py"
    module.write_text(_MODULE)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"), NUMBA_ENABLE_CUDASIM="0")
    package_root = os.path.dirname(os.path.dirname(nexec.__file__))
    env["PYTHONPATH"] = os.pathsep.join([package_root, env.get("PYTHONPATH", "")])

    def run(*dtypes):
        procs = [subprocess.Popen([sys.executable, str(module), d], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for d in dtypes]
        outs = [p.communicate(timeout=300) for p in procs]
        assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
        return [out.split(maxsplit=1)[1].strip() for out, _ in outs]

    kinds = ("float32", "float64", "int64")
    first = run(*kinds)  # compiled at the same time, each saving its own signature
    assert [line.rsplit(" ", 2)[0] for line in first] == ["[0.0, 3.0, 6.0, 9.0, 12.0]"] * 2 + [
        "[0, 3, 6, 9, 12]"]
    again = run(*kinds)
    assert [line.rsplit(" ", 2)[1:] for line in again] == [["1", "0"]] * 3  # all loaded
    np.testing.assert_array_equal([line.rsplit(" ", 2)[0] for line in again],
                                  [line.rsplit(" ", 2)[0] for line in first])
