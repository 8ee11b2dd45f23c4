"""buildconf/ profiles: uWSGI's ini format with inheritance (+ append, null, %(key)s)."""

import textwrap

import pytest

import uwsgiconfig as uc


def write(tmp_path, name, text):
    p = tmp_path / f"{name}.ini"
    p.write_text(textwrap.dedent(text))
    return p


def test_shipped_profiles():
    assert uc.split_list(uc.load_profile("core").get("embedded_plugins")) == []
    assert uc.split_list(uc.load_profile("lua")["embedded_plugins"]) == ["lua"]
    assert uc.split_list(uc.load_profile("cffi")["embedded_plugins"]) == ["cffi"]
    assert uc.split_list(uc.load_profile("default")["embedded_plugins"]) == ["lua", "cffi"]
    luap = uc.load_profile("luap")
    assert uc.split_list(luap.get("embedded_plugins")) == []
    assert uc.split_list(luap["plugins"]) == ["lua"]
    for name in ("base", "core", "lua", "luap", "cffi", "default"):
        assert uc.load_profile(name)["bin_name"] == "uwsgi"


def test_profile_names_and_paths(tmp_path):
    assert uc.profile_path("lua") == uc.BUILDCONF / "lua.ini"
    assert uc.profile_path("lua.ini") == uc.BUILDCONF / "lua.ini"
    p = write(tmp_path, "mine", "[uwsgi]\nbin_name = x\n")
    assert uc.profile_path(str(p)) == p
    with pytest.raises(uc.BuildError, match="profile nosuch not found"):
        uc.profile_path("nosuch")


def test_inherit_append_null_interpolate(tmp_path):
    write(tmp_path, "parent", """
        [uwsgi]
        bin_name = uwsgi
        cflags = -O2 -Wall
        plugins = a, b
        extra = gone
        name = demo
    """)
    child = write(tmp_path, "child", """
        [uwsgi]
        inherit = parent
        cflags = +-DCHILD
        plugins = +c
        extra = null
        bin_name = %(name)s-bin
        note = built from %(bin_name)s
    """)
    v = uc.load_profile(child)
    assert v["cflags"] == "-O2 -Wall -DCHILD"
    assert uc.split_list(v["plugins"]) == ["a", "b", "c"]
    assert "extra" not in v
    assert "inherit" not in v
    assert v["bin_name"] == "demo-bin"
    assert v["note"] == "built from demo-bin"


def test_inherit_chain_from_buildconf(tmp_path):
    # a bare parent name not beside the profile comes from buildconf/
    p = write(tmp_path, "x", "[uwsgi]\ninherit = default\nembedded_plugins = +extra\ncflags = +-DX\n")
    v = uc.load_profile(p)
    assert uc.split_list(v["embedded_plugins"]) == ["lua", "cffi", "extra"]
    assert v["cflags"].endswith("-DX") and "-O2" in v["cflags"]


def test_append_to_missing_key(tmp_path):
    p = write(tmp_path, "x", "[uwsgi]\ninherit = base\nnewkey = +val\n")
    assert uc.load_profile(p)["newkey"] == "val"


def test_errors(tmp_path):
    write(tmp_path, "loop1", "[uwsgi]\ninherit = loop2\n")
    write(tmp_path, "loop2", "[uwsgi]\ninherit = loop1\n")
    with pytest.raises(uc.BuildError, match="inheritance loop"):
        uc.load_profile(tmp_path / "loop1.ini")
    p = write(tmp_path, "badref", "[uwsgi]\nbin_name = %(nothere)s\n")
    with pytest.raises(uc.BuildError, match=r"%\(nothere\)s"):
        uc.load_profile(p)
    p = write(tmp_path, "selfref", "[uwsgi]\na = %(b)s\nb = %(a)s\n")
    with pytest.raises(uc.BuildError, match="interpolation loop"):
        uc.load_profile(p)
    p = write(tmp_path, "nosection", "[other]\na = 1\n")
    with pytest.raises(uc.BuildError, match=r"no \[uwsgi\] section"):
        uc.load_profile(p)
    p = write(tmp_path, "noparent", "[uwsgi]\ninherit = nosuchparent\n")
    with pytest.raises(uc.BuildError, match="nosuchparent not found"):
        uc.load_profile(p)


def test_config_environment(tmp_path):
    cfg = uc.Config(env={"UWSGI_PROFILE": "lua", "UWSGI_EMBED_PLUGINS": "cffi,lua"})
    assert cfg.name == "lua"
    assert cfg.embedded == ["lua", "cffi"]
    cfg = uc.Config("luap", env={"UWSGI_BUILD_DIR": str(tmp_path), "CC": "ccache gcc", "CFLAGS": "-DFOO"})
    assert cfg.plugins == ["lua"] and cfg.embedded == []
    assert cfg.binary == tmp_path / "uwsgi"
    assert cfg.plugin_dir == tmp_path / "build" / "plugins"   # never the output dir: see buildconf/base.ini
    assert cfg.cc == ["ccache", "gcc"]
    assert cfg.cflags[-1] == "-DFOO"
    # a plugin both embedded and listed as .so is only embedded
    cfg = uc.Config("luap", env={"UWSGI_EMBED_PLUGINS": "lua"})
    assert cfg.embedded == ["lua"] and cfg.plugins == []
    assert uc.Config(env={}).name == "default"


def test_header_cdef():
    plain = uc.header_cdef(executable=False)
    exe = uc.header_cdef(executable=True)
    for text in (plain, exe):
        assert not [line for line in text.splitlines() if line.strip().startswith("#")]
    assert "uwsgi_parse_vars" in plain and "uwsgi_endswith" in plain
    assert "uwsgi_set_proctitle" not in plain
    assert "uwsgi_set_proctitle" in exe
    from cffi import FFI
    FFI().cdef(plain)      # valid cdef
    FFI().cdef(exe)
