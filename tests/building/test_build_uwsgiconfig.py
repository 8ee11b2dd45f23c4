"""uwsgiconfig.py verbs (--build, --plugin, --clean, --cflags) and their error paths, and
NAME_plugin.so baking/loading with a throw-away plugin."""

import os
import subprocess
import textwrap

import pytest
from build_helpers import PY, ROOT, uwsgiconfig

import uwsgiconfig as uc


def one_line_error(r, *needles):
    assert r.returncode != 0
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1, r.stderr
    assert err.startswith("uwsgiconfig: ")
    for n in needles:
        assert n in err, err
    assert "Traceback" not in r.stdout + r.stderr


def test_usage_and_bad_verbs():
    r = uwsgiconfig()
    assert r.returncode == 1 and "usage" in r.stderr
    assert uwsgiconfig("--help").returncode == 0
    r = uwsgiconfig("--bulid")
    assert r.returncode == 1 and "unknown verb --bulid" in r.stderr
    r = uwsgiconfig("--clean", "extra")
    assert r.returncode == 1 and "wrong arguments" in r.stderr
    assert uwsgiconfig("--plugin").returncode == 1


def test_cflags():
    r = uwsgiconfig("--cflags")
    assert r.returncode == 0
    flags = r.stdout.split()
    assert f"-I{ROOT}" in flags and "-O2" in flags
    assert any(f.startswith("-I") and "python3" in f for f in flags)
    r = uwsgiconfig("--cflags", "core", env={"CFLAGS": "-DEXTRA_FLAG"})
    assert "-DEXTRA_FLAG" in r.stdout.split()
    one_line_error(uwsgiconfig("--cflags", "nosuchprofile"), "profile nosuchprofile not found")


def test_missing_compiler(tmp_path):
    one_line_error(uwsgiconfig("--build", "core", out=tmp_path, env={"CC": "/nonexistent/gcc"}),
                   "/nonexistent/gcc not found", "apt-get install gcc")
    # no gcc on PATH at all
    one_line_error(uwsgiconfig("--build", "core", out=tmp_path, env={"PATH": str(tmp_path)}),
                   "gcc not found: apt-get install gcc")
    assert not (tmp_path / "uwsgi").exists()


def test_missing_python_header_and_libpython(tmp_path, monkeypatch):
    cfg = uc.Config("core", env={"UWSGI_BUILD_DIR": str(tmp_path)})
    cfg.py_include = str(tmp_path)
    with pytest.raises(uc.BuildError, match="Python.h not found .*apt-get install python3-dev"):
        uc.check_toolchain(cfg)
    cfg = uc.Config("core", env={"UWSGI_BUILD_DIR": str(tmp_path)})
    cfg.py_ldlibrary = "libpython-nothere.so"
    with pytest.raises(uc.BuildError, match="shared libpython not found"):
        uc.check_toolchain(cfg)
    uc.check_toolchain(cfg, need_libpython=False)


def test_missing_cffi(tmp_path):
    # an interpreter where `import cffi` fails: a sitecustomize that blocks it
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nclass B:\n    def find_spec(self, name, *a):\n"
        "        if name in ('cffi', '_cffi_backend'):\n            raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, B())\n")
    r = uwsgiconfig("--build", "core", out=tmp_path / "out", env={"PYTHONPATH": str(tmp_path)})
    one_line_error(r, "cffi not found: pip install cffi")


def test_compile_error_is_reported(tmp_path):
    r = uwsgiconfig("--build", "core", out=tmp_path, env={"CFLAGS": "-DUWSGI_H=1 -Werror=nonexistent-warning-xyz"})
    assert r.returncode == 1
    assert "uwsgiconfig: compiling" in r.stderr and "failed" in r.stderr


def test_build_core_rebuild_is_cached_and_clean(tmp_path):
    r = uwsgiconfig("--build", "core", out=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "using profile: buildconf/core.ini" in r.stdout
    assert "uWSGI is ready" in r.stdout
    exe = tmp_path / "uwsgi"
    assert os.access(exe, os.X_OK)
    lib = tmp_path / "build" / "lib"
    assert len(list(lib.glob("_uwsgi.*.so"))) == 1 and len(list(lib.glob("_uwsgi_native.*.so"))) == 1
    r2 = uwsgiconfig("--build", "core", out=tmp_path)
    assert r2.returncode == 0 and "(0 compiled" in r2.stdout
    # UWSGI_PROFILE picks the default profile
    r3 = uwsgiconfig("--build", out=tmp_path, env={"UWSGI_PROFILE": "core"})
    assert "buildconf/core.ini" in r3.stdout and "(0 compiled" in r3.stdout
    (tmp_path / "stray_plugin.so").write_bytes(b"")
    r = uwsgiconfig("--clean", out=tmp_path)
    assert r.returncode == 0
    assert not exe.exists() and not (tmp_path / "build").exists() and not (tmp_path / "stray_plugin.so").exists()
    assert uwsgiconfig("--clean", out=tmp_path).returncode == 0       # idempotent


# --- a throw-away plugin: C in GCC_LIST, a package with a subpackage and data files -------

def make_plugin(base, name="demo", requires=None, init=None):
    d = base / name
    pkg = d / f"{name}_plugin"
    (pkg / "sub").mkdir(parents=True)
    (d / "uwsgiplugin.py").write_text(textwrap.dedent(f"""
        NAME = {name!r}
        CFLAGS = ["-DDEMO_ANSWER=42"]
        LDFLAGS = []
        LIBS = []
        GCC_LIST = ["{name}"]
        REQUIRES = {requires or []!r}
    """))
    (d / f"{name}.c").write_text(f"int {name}_answer(void) {{ return DEMO_ANSWER; }}\n")
    (pkg / "__init__.py").write_text(init or textwrap.dedent("""
        from uwsgid.plugins.contract import Plugin
        from uwsgid.config.options import Option
        from .sub.helper import VALUE

        class Demo(Plugin):
            name = "demo"
            modifier1 = 42
            options = [Option("demo-opt", kind="int", default=1, help="a demo option")]

        plugin = Demo()
    """))
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "helper.py").write_text("VALUE = 'from sub'\n")
    (pkg / "hello.txt").write_bytes(b"hello \x00\xff data\n")
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "junk.pyc").write_bytes(b"junk")
    return d


LOAD = textwrap.dedent("""
    import sys, pkgutil, importlib.resources
    from cffi import FFI
    from uwsgid.plugins import loader as L
    from uwsgid.config.options import lookup
    p = L.load_plugin(sys.argv[1], sys.argv[2:])
    import demo_plugin
    print("loader", type(demo_plugin.__loader__).__name__)
    print("name", p.name, p.modifier1)
    print("sub", demo_plugin.VALUE)
    print("data", pkgutil.get_data("demo_plugin", "hello.txt"))
    print("resource", importlib.resources.files("demo_plugin").joinpath("hello.txt").read_bytes())
    print("option", lookup("demo-opt").group)
    print("junk", pkgutil.get_data("demo_plugin", "__pycache__/junk.pyc") if type(demo_plugin.__loader__).__name__ != "BakedImporter" else None)
    ffi = FFI(); ffi.cdef("int demo_answer(void);")
    print("answer", ffi.dlopen(L.plugin_library("demo")).demo_answer())
    print("describe", L.describe()[-1])
    print("again", L.load_plugin("demo", sys.argv[2:]) is p)
""")


def run_load(spec, *dirs, cwd=None):
    return subprocess.run([PY, "-c", LOAD, spec, *dirs], capture_output=True, text=True, cwd=cwd or ROOT)


def test_plugin_so_baked_and_loaded(tmp_path):
    src = make_plugin(tmp_path / "src")
    out = tmp_path / "out"
    r = uwsgiconfig("--plugin", src, out=out)
    assert r.returncode == 0, r.stdout + r.stderr
    so = out / "build" / "plugins" / "demo_plugin.so"
    assert so.is_file() and "demo plugin built" in r.stdout
    r = run_load(str(so))
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert lines["loader"] == "BakedImporter"
    assert lines["name"] == "demo 42"
    assert lines["sub"] == "from sub"
    assert lines["data"] == repr(b"hello \x00\xff data\n")
    assert lines["resource"] == repr(b"hello \x00\xff data\n")
    assert lines["option"] == "demo"
    assert lines["answer"] == "42"
    assert lines["describe"] == repr(("demo", str(so)))
    assert lines["again"] == "True"
    # by name through a search dir, with a modifier1 override
    r = run_load("7:demo", str(so.parent))
    assert r.returncode == 0, r.stderr
    assert "name demo 7" in r.stdout and "loader BakedImporter" in r.stdout
    # the baked copy is self-contained: works with the source tree gone
    (src / "demo_plugin" / "sub" / "helper.py").unlink()
    import shutil
    shutil.rmtree(src)
    r = run_load(str(so))
    assert r.returncode == 0 and "sub from sub" in r.stdout, r.stderr


def test_plugin_stale_source_wins(tmp_path):
    src = make_plugin(tmp_path / "src")
    out = tmp_path / "out"
    assert uwsgiconfig("--plugin", src, out=out).returncode == 0
    (src / "demo_plugin" / "sub" / "helper.py").write_text("VALUE = 'edited'\n")
    r = run_load(str(out / "build" / "plugins" / "demo_plugin.so"))
    assert r.returncode == 0, r.stderr
    assert "sub edited" in r.stdout and "loader SourceFileLoader" in r.stdout
    assert "changed since it was built" in r.stderr


def test_plugin_name_override_and_profile(tmp_path):
    src = make_plugin(tmp_path / "src")
    out = tmp_path / "out"
    r = uwsgiconfig("--plugin", src, "core", "demo2", out=out)
    assert r.returncode == 0, r.stderr
    assert (out / "build" / "plugins" / "demo2_plugin.so").is_file()
    r = run_load("demo2", str(out / "build" / "plugins"))
    assert r.returncode == 0 and "name demo 42" in r.stdout, r.stderr


def test_plugin_errors(tmp_path):
    one_line_error(uwsgiconfig("--plugin", tmp_path / "nothing", out=tmp_path), "no uwsgiplugin.py")
    src = make_plugin(tmp_path / "src", requires=["no_such_module_xyz"])
    one_line_error(uwsgiconfig("--plugin", src, out=tmp_path),
                   "plugin demo needs python no_such_module_xyz: pip install no_such_module_xyz")
    src = make_plugin(tmp_path / "src2", requires=[("header:no_such_header_xyz.h", "apt-get install xyz-dev")])
    one_line_error(uwsgiconfig("--plugin", src, out=tmp_path), "needs header no_such_header_xyz.h: apt-get install xyz-dev")
    src = make_plugin(tmp_path / "src3")
    (src / "uwsgiplugin.py").write_text("NAME = 'bad name'\n")
    one_line_error(uwsgiconfig("--plugin", src, out=tmp_path), "is not a C identifier")
    src = make_plugin(tmp_path / "src4")
    (src / "uwsgiplugin.py").write_text("NAME = 'demo'\nGCC_LIST = ['missing']\n")
    one_line_error(uwsgiconfig("--plugin", src, out=tmp_path), "missing.c not found")


def test_loader_errors(tmp_path):
    code = textwrap.dedent("""
        import sys
        from uwsgid.plugins import loader as L
        try:
            L.load_plugin(sys.argv[1], [sys.argv[2]])
        except L.PluginNotFound as e:
            print("notfound", e)
        except L.PluginError as e:
            print("error", e)
    """)
    r = subprocess.run([PY, "-c", code, "nosuchplugin", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert r.stdout.startswith("notfound plugin nosuchplugin not found"), r.stdout + r.stderr
    assert str(tmp_path) in r.stdout
    bogus = tmp_path / "bogus_plugin.so"
    bogus.write_bytes(b"not an elf")
    r = subprocess.run([PY, "-c", code, str(bogus), str(tmp_path)], capture_output=True, text=True)
    assert r.stdout.startswith("error") and "is not a uwsgi plugin" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([PY, "-c", code, "300:lua", str(tmp_path)], capture_output=True, text=True)
    assert "modifier1 must be 0-255" in r.stdout
    # an import error inside the plugin is a PluginError naming the plugin
    src = make_plugin(tmp_path / "src", init="raise RuntimeError('plugin init failed')\n")
    assert uwsgiconfig("--plugin", src, out=tmp_path / "out").returncode == 0
    r = subprocess.run([PY, "-c", code, str(tmp_path / "out" / "build" / "plugins" / "demo_plugin.so"), str(tmp_path)],
                       capture_output=True, text=True)
    assert r.stdout.startswith("error plugin demo") and "plugin init failed" in r.stdout, r.stdout + r.stderr


def test_aliases():
    from uwsgid.plugins.loader import canonical_name
    assert canonical_name("python3") == "cffi" and canonical_name("python") == "cffi"
    assert canonical_name("lua51") == "lua" and canonical_name("luajit") == "lua" and canonical_name("lua5.1") == "lua"
    assert canonical_name("lua") == "lua" and canonical_name("rack") == "rack"


def test_home_of_another_python_version(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 2.7.18\n")
    cfg = uc.Config("core", env={"UWSGI_BUILD_DIR": str(tmp_path / "out")})
    cfg.cffi_home = str(venv)
    with pytest.raises(uc.BuildError, match="is a Python 2.7 virtualenv"):
        uc.check_toolchain(cfg)
