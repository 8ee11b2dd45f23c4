"""uwsgid.plugins.loader in-process: the importer for baked packages, spec parsing, search
dirs. (Loading real NAME_plugin.so files is covered in test_build_uwsgiconfig.py, the
executable in test_build_binary.py.)"""

import importlib
import linecache
import pkgutil
import sys
import traceback

import pytest
from helpers import ROOT

from uwsgid.plugins import loader as L

FILES = {
    "bakedx_plugin/__init__.py": b"from .sub import helper\nVALUE = helper.VALUE\n"
                                 b"def boom():\n    raise ValueError('from baked code')\n",
    "bakedx_plugin/sub/__init__.py": b"",
    "bakedx_plugin/sub/helper.py": b"VALUE = 41 + 1\n",
    "bakedx_plugin/data/helper.lua": b"return 1\n",
    "bakedx_plugin/blob.bin": bytes(range(256)),
}


@pytest.fixture
def baked():
    imp = L.BakedImporter("bakedx_plugin", FILES, "/opt/uwsgi/bakedx_plugin.so")
    sys.meta_path.insert(0, imp)
    try:
        yield importlib.import_module("bakedx_plugin")
    finally:
        sys.meta_path.remove(imp)
        for name in [m for m in sys.modules if m == "bakedx_plugin" or m.startswith("bakedx_plugin.")]:
            del sys.modules[name]


def test_import_and_data(baked):
    assert baked.VALUE == 42
    assert baked.__file__ == "/opt/uwsgi/bakedx_plugin.so/bakedx_plugin/__init__.py"
    assert pkgutil.get_data("bakedx_plugin", "data/helper.lua") == b"return 1\n"
    assert pkgutil.get_data("bakedx_plugin", "blob.bin") == bytes(range(256))
    with pytest.raises(FileNotFoundError):
        pkgutil.get_data("bakedx_plugin", "missing.txt")
    with pytest.raises(FileNotFoundError):
        pkgutil.get_data("bakedx_plugin", "../../etc/passwd")
    import importlib.resources as res
    assert res.files("bakedx_plugin").joinpath("blob.bin").read_bytes() == bytes(range(256))
    with pytest.raises(ImportError):
        importlib.import_module("bakedx_plugin.nothere")


def test_tracebacks_show_baked_source(baked):
    try:
        baked.boom()
    except ValueError:
        text = traceback.format_exc()
    assert "/opt/uwsgi/bakedx_plugin.so/bakedx_plugin/__init__.py" in text
    assert "raise ValueError('from baked code')" in text      # source lines via the loader
    linecache.clearcache()


def _built_code(files: dict[str, bytes]) -> dict[str, bytes]:
    """The ":code:" entries the build bakes beside the sources (uwsgiconfig.compiled_code)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("_uwsgiconfig_t", ROOT / "uwsgiconfig.py")
    cfg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cfg)
    assert cfg.CODE_PREFIX == L.CODE_PREFIX
    return {cfg.CODE_PREFIX + rel: cfg.compiled_code(rel, data) for rel, data in files.items() if rel.endswith(".py")}


def _import_baked(table: dict[str, bytes]):
    files, codes = L.split_code(table)
    imp = L.BakedImporter("bakedx_plugin", files, "/opt/uwsgi/bakedx_plugin.so", codes)
    sys.meta_path.insert(0, imp)
    try:
        return importlib.import_module("bakedx_plugin"), files, codes
    finally:
        sys.meta_path.remove(imp)


def _forget_baked():
    for name in [m for m in sys.modules if m == "bakedx_plugin" or m.startswith("bakedx_plugin.")]:
        del sys.modules[name]
    linecache.clearcache()


def test_compiled_code_is_used_and_names_the_baked_file():
    # the build's code says 7 where the source says 42: the code is what runs
    code = _built_code({**FILES, "bakedx_plugin/sub/helper.py": b"VALUE = 7\n"})
    try:
        mod, files, codes = _import_baked({**FILES, **code})
        assert mod.VALUE == 7
        assert files == FILES and set(codes) == {rel for rel in FILES if rel.endswith(".py")}
        try:
            mod.boom()
        except ValueError:
            text = traceback.format_exc()
        assert 'File "/opt/uwsgi/bakedx_plugin.so/bakedx_plugin/__init__.py", line 4, in boom' in text
        assert "raise ValueError('from baked code')" in text
        assert mod.boom.__code__.co_filename == "/opt/uwsgi/bakedx_plugin.so/bakedx_plugin/__init__.py"
    finally:
        _forget_baked()


def test_code_for_another_python_falls_back_to_the_source():
    code = _built_code({**FILES, "bakedx_plugin/sub/helper.py": b"VALUE = 7\n"})
    code = {rel: b"\0\0\r\n" + data[4:] for rel, data in code.items()}     # another magic number
    try:
        mod, _, _ = _import_baked({**FILES, **code})
        assert mod.VALUE == 42
    finally:
        _forget_baked()


def test_spec_parsing():
    assert L._parse_spec("lua") == (None, "lua")
    assert L._parse_spec(" 6:lua ") == (6, "lua")
    assert L._parse_spec("0:/x/y_plugin.so") == (0, "/x/y_plugin.so")
    with pytest.raises(L.PluginError):
        L._parse_spec("256:lua")


def test_search_dirs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(L, "_exe_dir", "/opt/bin")
    monkeypatch.setattr(L, "_plugin_dir", "/opt/plugins")
    assert L.search_dirs(["a", "/opt/bin"]) == [str(tmp_path / "a"), "/opt/bin", "/opt/plugins", str(tmp_path)]


def test_not_found_names_dirs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(L.PluginNotFound) as e:
        L.load_plugin("nosuchplugin_xyz", [str(tmp_path / "d1")])
    msg = str(e.value)
    assert "plugin nosuchplugin_xyz not found" in msg and str(tmp_path / "d1") in msg and str(tmp_path) in msg
    with pytest.raises(L.PluginNotFound, match="not found"):
        L.load_plugin(str(tmp_path / "x_plugin.so"))
    with pytest.raises(L.PluginError, match="empty plugin name"):
        L.load_plugin("6:")


def test_a_baked_table_is_read_as_views_of_the_libraries_memory():
    """read_table gives views of the C arrays, not copies: the baked files (~800 KB with both
    plugins) stay in the binary's read-only pages instead of the heap every worker inherits."""
    cffi = pytest.importorskip("cffi")
    ffi = cffi.FFI()
    ffi.cdef("struct uwsgi_baked_file { const char *path; const unsigned char *data; size_t len; };")
    path = ffi.new("char[]", b"bakedx_plugin/data/helper.lua")
    data = ffi.new("unsigned char[]", b"return 1\n")
    table = ffi.new("struct uwsgi_baked_file[2]")
    table[0].path, table[0].data, table[0].len = path, data, 9
    files = L.read_table(ffi, table)
    assert files == {"bakedx_plugin/data/helper.lua": b"return 1\n"}
    data[7] = ord("2")      # the view reads the C memory itself
    assert bytes(files["bakedx_plugin/data/helper.lua"]) == b"return 2\n"


def test_the_importer_serves_files_held_as_views():
    files = {rel: memoryview(data) for rel, data in FILES.items()}
    imp = L.BakedImporter("bakedx_plugin", files, "/opt/uwsgi/bakedx_plugin.so")
    sys.meta_path.insert(0, imp)
    try:
        mod = importlib.import_module("bakedx_plugin")
        assert mod.VALUE == 42
        data = pkgutil.get_data("bakedx_plugin", "data/helper.lua")
        assert data == b"return 1\n" and isinstance(data, bytes)
        assert "VALUE = 41 + 1" in imp.get_source("bakedx_plugin.sub.helper")
    finally:
        sys.meta_path.remove(imp)
        for name in [m for m in sys.modules if m == "bakedx_plugin" or m.startswith("bakedx_plugin.")]:
            del sys.modules[name]
