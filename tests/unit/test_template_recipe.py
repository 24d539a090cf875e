"""Template recipes: parsing, checks, hashing; host mirrors; the pieces the builder assembles.

The pipeline test at the end runs ``build``/``cached_build`` with a fake bootstrap back end
(a tiny tree instead of mmdebstrap) and the real ``mke2fs``: seconds, not a Debian build.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from septa.templates import apt_sources, builder, guestfiles, initrd, mmdebstrap, recipe
from septa.templates.backends import Backend, get_backend
from septa.templates.buildlog import BuildError, BuildLog
from septa.templates.recipe import RecipeError, load_recipe, parse_recipe, recipe_hash

DEBIAN_12 = Path(__file__).resolve().parents[2] / "templates" / "recipes" / "debian-12.toml"

MINIMAL = """
name = "mini"
builder = "mmdebstrap"
kernel_package = "linux-image-cloud-amd64"
image_size = "64MiB"
[mmdebstrap]
suite = "bookworm"
"""

# --- recipe parsing -----------------------------------------------------------------------


def test_debian_12_recipe() -> None:
    r = load_recipe(DEBIAN_12)
    assert (r.name, r.builder, r.user, r.uid) == ("debian-12", "mmdebstrap", "user", 1000)
    assert r.image_size == 4 << 30
    assert r.kernel_package == "linux-image-cloud-amd64"
    assert r.kernel_cmdline.startswith("root=/dev/vda")
    assert "console=hvc0" in r.kernel_cmdline
    assert {"virtio_pci", "virtio_blk", "virtio_console"} <= set(r.initrd_modules)
    assert "python3" in r.packages and "systemd" in r.packages
    assert "getty@tty1.service" in r.disable_units
    opts = mmdebstrap.parse_options(r)
    assert (opts.suite, opts.variant, opts.mode) == ("bookworm", "minbase", "root")
    assert get_backend(r.builder).name == "mmdebstrap"


def test_minimal_recipe_defaults() -> None:
    r = parse_recipe(MINIMAL)
    assert (r.hostname, r.user, r.uid, r.console) == ("mini", "user", 1000, "hvc0")
    assert r.image_size == 64 << 20
    assert r.options == {"suite": "bookworm"}
    assert r.initrd_tool == "initramfs-tools"


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('name = "mini"', "", "name"),
        ('name = "mini"', 'name = "bad name!"', "name"),
        ('image_size = "64MiB"', 'image_size = "lots"', "image_size"),
        ('image_size = "64MiB"', 'image_size = "1M"', "image_size"),
        ('kernel_package = "linux-image-cloud-amd64"', "", "kernel_package"),
        ('kernel_package = "linux-image-cloud-amd64"', "kernel_package = 5", "kernel_package"),
        ('builder = "mmdebstrap"', "", "builder"),
    ],
)
def test_recipe_errors_name_the_key(old: str, new: str, key: str) -> None:
    with pytest.raises(RecipeError, match=key):
        parse_recipe(MINIMAL.replace(old, new))


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("uid = 0", "uid"),
        ("uid = true", "uid"),
        ('user = "Root User"', "user"),
        ('packages = "vim"', "packages"),
        ('packages = ["vim", 3]', "packages"),
        ('[initrd]\nmodules = ["virtio;rm -rf"]', "initrd.modules"),
        ('[systemd]\ndisable = ["not a unit"]', "systemd.disable"),
    ],
)
def test_recipe_rejects(extra: str, key: str) -> None:
    if extra.startswith("["):
        text = MINIMAL + extra
    else:
        text = MINIMAL.replace("[mmdebstrap]", extra + "\n[mmdebstrap]")
    with pytest.raises(RecipeError, match=key):
        parse_recipe(text)


def test_not_toml_and_unknown_builder(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="TOML"):
        parse_recipe("name = ")
    with pytest.raises(RecipeError, match="unknown builder"):
        get_backend("pacstrap")
    with pytest.raises(RecipeError, match="cannot read"):
        load_recipe(tmp_path / "missing.toml")


def test_mmdebstrap_options_are_checked() -> None:
    for extra, key in (('variant = "huge"', "variant"), ('mode = "vm"', "mode"),
                       ("colour = 1", "unknown keys"), ('components = "main"', "components")):
        with pytest.raises(RecipeError, match=key):
            mmdebstrap.parse_options(parse_recipe(MINIMAL + extra + "\n"))
    with pytest.raises(RecipeError, match="suite"):
        mmdebstrap.parse_options(parse_recipe(MINIMAL.replace('suite = "bookworm"', "")))


@pytest.mark.parametrize(
    ("text", "size"),
    [("4GiB", 4 << 30), ("4G", 4 << 30), ("512M", 512 << 20), ("512 MiB", 512 << 20),
     (1 << 30, 1 << 30), ("1T", 1 << 40)],
)
def test_parse_size(text: object, size: int) -> None:
    assert recipe.parse_size(text) == size


# --- hashing ------------------------------------------------------------------------------


def test_recipe_hash_covers_the_recipe_and_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = [label for label, _ in recipe.image_inputs()]
    assert "agent/wire.py" in labels and "agent/main.py" in labels
    assert "templates/guestfiles.py" in labels

    path = tmp_path / "r.toml"
    path.write_text(MINIMAL)
    first = recipe_hash(path)
    assert first == recipe_hash(path) and len(first) == 64
    path.write_text(MINIMAL + "# a comment is a change\n")
    assert recipe_hash(path) != first

    path.write_text(MINIMAL)
    agent_file = tmp_path / "wire.py"
    agent_file.write_text("X = 1\n")
    monkeypatch.setattr(recipe, "image_inputs", lambda: iter([("agent/wire.py", agent_file)]))
    fake_first = recipe_hash(path)
    agent_file.write_text("X = 2\n")
    assert recipe_hash(path) != fake_first


# --- host apt sources -------------------------------------------------------------------------

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
"""


def test_host_sources_both_formats(tmp_path: Path) -> None:
    apt = tmp_path / "etc/apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d/debian.sources").write_text(DEB822)
    (apt / "sources.list.d/other.list").write_text(
        "# comment\ndeb [arch=amd64 signed-by=/k.gpg] https://vendor.example/apt stable main\n"
    )
    (apt / "sources.list.d/off.list.disabled").write_text("deb http://no.example/ x main\n")
    sources = apt_sources.host_sources(tmp_path)
    assert [s.uris[0] for s in sources] == [
        "http://mirror.example/debian", "http://mirror.example/debian-security",
        "https://vendor.example/apt",
    ]
    assert sources[2].signed_by == "/k.gpg" and sources[2].suites == ("stable",)

    assert apt_sources.mirror_for("bookworm", sources) == "http://mirror.example/debian"
    assert apt_sources.mirror_for("bookworm-security", sources) == (
        "http://mirror.example/debian-security"
    )
    # another release than the host's: the host's mirror of the same kind
    assert apt_sources.mirror_for("trixie", sources) == "http://mirror.example/debian"
    assert apt_sources.mirror_for("trixie-security", sources) == (
        "http://mirror.example/debian-security"
    )
    with pytest.raises(apt_sources.MirrorNotFound):
        apt_sources.mirror_for("bookworm", sources[2:])


def test_mmdebstrap_command_line(tmp_path: Path) -> None:
    r = load_recipe(DEBIAN_12)
    opts = mmdebstrap.parse_options(r)
    sources = mmdebstrap.source_lines(opts, apt_sources.parse_deb822(DEB822))
    assert sources == [
        "deb http://mirror.example/debian bookworm main",
        "deb http://mirror.example/debian bookworm-updates main",
        "deb http://mirror.example/debian-security bookworm-security main",
    ]
    argv = mmdebstrap.command(r, tmp_path / "rootfs", tmp_path / "setup", sources)
    assert argv[0] == "mmdebstrap"
    assert "--mode=root" in argv and "--variant=minbase" in argv
    assert "--format=directory" in argv
    include = next(a for a in argv if a.startswith("--include="))
    assert "linux-image-cloud-amd64" in include and "python3" in include
    assert any(a.startswith("--setup-hook=cp -a ") for a in argv)
    assert "--dpkgopt=path-exclude=/usr/share/doc/*" in argv
    assert argv[-5:] == ["bookworm", str(tmp_path / "rootfs"), *sources]


def test_initramfs_tools_config() -> None:
    files = initrd.config_files(load_recipe(DEBIAN_12))
    assert "MODULES=list" in files["/etc/initramfs-tools/conf.d/septa.conf"]
    modules = files["/usr/share/initramfs-tools/modules.d/septa"].split()
    assert "virtio_blk" in modules and "virtio_console" in modules
    with pytest.raises(RecipeError, match="initrd.tool"):
        initrd.config_files(parse_recipe(MINIMAL + '[initrd]\ntool = "dracut2"\n'))


def test_installed_packages_from_dpkg_status(tmp_path: Path) -> None:
    status = tmp_path / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True)
    status.write_text(
        "Package: libc6\nStatus: install ok installed\nMulti-Arch: same\nArchitecture: amd64\n"
        "Version: 2.36-9\nDescription: x\n more\n\n"
        "Package: python3\nStatus: install ok installed\nVersion: 3.11.2-1\n\n"
        "Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n"
    )
    assert mmdebstrap.installed_packages(tmp_path) == {
        "libc6:amd64": "2.36-9", "python3": "3.11.2-1",
    }


# --- guest files -------------------------------------------------------------------------------


def test_guest_files(tmp_path: Path) -> None:
    r = load_recipe(DEBIAN_12)
    guestfiles.install(tmp_path, r)
    agent = tmp_path / "usr/lib/septa-agent"
    assert (agent / "septa/agent/wire.py").read_bytes() == Path(
        recipe.package_dir(__import__("septa.agent").agent) / "wire.py"
    ).read_bytes()
    assert (agent / "septa/__init__.py").is_file()
    assert (agent / "septa-agent").stat().st_mode & 0o111
    assert (agent / "septa-mount-private").stat().st_mode & 0o111
    unit = (tmp_path / "usr/lib/systemd/system/septa-agent.service").read_text()
    assert "DefaultDependencies=no" in unit and "/usr/lib/septa-agent/septa-agent" in unit
    assert "WantedBy=sysinit.target" in unit
    mount = (tmp_path / "usr/lib/systemd/system/septa-mount-private.service").read_text()
    assert "ConditionPathExists=/dev/vdb" in mount
    assert "org.septa.agent.0" in (tmp_path / "usr/lib/udev/rules.d/90-septa-agent.rules")\
        .read_text()
    assert (tmp_path / "etc/hostname").read_text() == "debian-12\n"
    assert "/dev/vda" in (tmp_path / "etc/fstab").read_text()
    assert (tmp_path / "rw").is_dir()
    dropin = tmp_path / "etc/systemd/system/serial-getty@hvc0.service.d/septa-autologin.conf"
    assert "--autologin root" in dropin.read_text()
    commands = guestfiles.chroot_commands(r)
    assert ["useradd", "--create-home", "--uid", "1000"] == commands[0][:4]
    assert commands[0][-1] == "user"


def test_installed_agent_runs_with_the_stdlib_alone(tmp_path: Path) -> None:
    """The copied agent, on its own, imports and answers --help-like misuse with usage."""
    import subprocess
    import sys

    guestfiles.install_agent(tmp_path)
    code = (f"import sys; sys.path.insert(0, {str(tmp_path / 'usr/lib/septa-agent')!r}); "
            "import septa.agent.main as m; "
            "assert m.__file__.startswith(sys.path[0]); m.main(['--bogus'])")
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1 and "usage:" in proc.stderr


def test_mount_private_script_is_valid_sh(tmp_path: Path) -> None:
    import subprocess

    script = tmp_path / "septa-mount-private"
    script.write_text(guestfiles.MOUNT_PRIVATE_SCRIPT)
    subprocess.run(["sh", "-n", str(script)], check=True)
    # no device: nothing to do, success
    out = subprocess.run(["sh", str(script), str(tmp_path / "no-such-disk")],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "nothing to mount" in out.stderr


# --- the build pipeline with a fake bootstrap ------------------------------------------------


def _fake_backend(calls: list[str], fail: bool = False) -> Backend:
    def bootstrap(r: recipe.Recipe, rootfs: Path, config: dict[str, str], log: BuildLog) -> None:
        calls.append("bootstrap")
        (rootfs / "boot").mkdir(parents=True)
        (rootfs / "boot/vmlinuz-6.1.0-test").write_bytes(b"kernel")
        (rootfs / "boot/initrd.img-6.1.0-test").write_bytes(b"initrd")
        for path, text in config.items():
            target = rootfs / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        log.report("bootstrap", 0.5)
        if fail:
            log.run(["sh", "-c", "echo the mirror is gone >&2; exit 3"])

    return Backend("fake", ("sh",), bootstrap, lambda rootfs: {"fake-package": "1.0"})


@pytest.fixture
def fake_build(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    if shutil.which("mke2fs") is None:
        pytest.skip("mke2fs (e2fsprogs) is not installed")
    calls: list[str] = []
    monkeypatch.setattr(builder, "get_backend", lambda name: _fake_backend(calls))
    monkeypatch.setattr(builder, "_check_tools", lambda tools: None)
    monkeypatch.setattr(guestfiles, "chroot_commands", lambda r: [])
    return calls


def _recipe_file(tmp_path: Path) -> Path:
    path = tmp_path / "mini.toml"
    path.write_text(MINIMAL + '[systemd]\ndisable = []\n')
    return path


def test_build_outputs_and_progress(tmp_path: Path, fake_build: list[str]) -> None:
    progress: list[tuple[str, float]] = []
    image = builder.build(_recipe_file(tmp_path), tmp_path / "out",
                          progress=lambda s, f: progress.append((s, f)))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "build.log", "initrd.img", "manifest.json", "root.img", "vmlinuz",
    ]
    assert image.root.stat().st_size == 64 << 20
    assert image.root.stat().st_blocks * 512 < 64 << 20  # sparse
    assert image.kernel.read_bytes() == b"kernel"
    assert image.kernel_version == "6.1.0-test"
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["name"] == "mini"
    assert manifest["recipe_hash"] == recipe_hash(tmp_path / "mini.toml")
    assert manifest["packages"] == {"fake-package": "1.0"}
    assert manifest["kernel_cmdline"] == image.kernel_cmdline
    fractions = [f for _, f in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {s for s, _ in progress} >= {"bootstrap", "customize", "image"}
    assert not [p for p in tmp_path.iterdir() if ".build-" in p.name]


def test_failed_build_leaves_nothing(
    tmp_path: Path, fake_build: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(builder, "get_backend", lambda name: _fake_backend([], fail=True))
    builds = tmp_path / "builds"
    builds.mkdir()
    with pytest.raises(BuildError, match="the mirror is gone"):
        builder.build(_recipe_file(tmp_path), builds / "out")
    assert list(builds.iterdir()) == []


def test_cached_build_reuses_and_prunes(tmp_path: Path, fake_build: list[str]) -> None:
    path = _recipe_file(tmp_path)
    cache = tmp_path / "cache"
    first = builder.cached_build(path, cache)
    again = builder.cached_build(path, cache)
    assert fake_build == ["bootstrap"] and again.directory == first.directory
    path.write_text(path.read_text() + "# changed\n")
    second = builder.cached_build(path, cache)
    assert fake_build == ["bootstrap", "bootstrap"]
    assert second.directory != first.directory and not first.directory.exists()
    assert second.recipe_hash == recipe_hash(path)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SEPTA_CACHE", raising=False)
    assert builder.default_cache_dir() == Path("/var/cache/septa/templates")
    monkeypatch.setenv("SEPTA_CACHE", str(tmp_path))
    assert builder.default_cache_dir() == tmp_path / "templates"
