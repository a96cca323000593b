//! Container image roots and network namespaces against the real kernel: a rootfs made from
//! the host's static busybox, run as a directory and as an overlay; a server in an isolated
//! network namespace reached through `connect_in_netns` (and not from the host); a second
//! sandbox joining the first one's namespace. Needs root, cgroups, namespaces and overlayfs
//! (the container backend's probe); skips, saying why, where the host cannot run it.
use nimbus_sandbox::{
    ContainerSandbox, ExitStatus, FsView, ImageRoot, Instance, Limits, Sandbox, SandboxSpec, connect_in_netns,
};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const BUSYBOX: &str = "/bin/busybox";

fn backend() -> Option<&'static ContainerSandbox> {
    static SB: OnceLock<Result<ContainerSandbox, String>> = OnceLock::new();
    let sb = SB.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("nimbus-image-root-test-{}", std::process::id()));
        ContainerSandbox::probe(&dir)
    });
    match sb {
        Ok(sb) => Some(sb),
        Err(why) => {
            eprintln!("skipping: the container backend cannot run here: {why}");
            None
        }
    }
}

/// Starts a sandbox on the shared backend; a failure names the step that failed (and its
/// errno) in the panic message, where CI logs show it.
#[track_caller]
fn start(s: SandboxSpec) -> Box<dyn Instance> {
    let program = s.program.display().to_string();
    backend().unwrap().start(s).unwrap_or_else(|e| panic!("starting {program} failed: {e}"))
}

/// Root + a working container backend + a static busybox to build images from.
fn can_run() -> bool {
    if !Path::new(BUSYBOX).is_file() {
        eprintln!("skipping: {BUSYBOX} (busybox-static) is not installed, no image can be built");
        return false;
    }
    backend().is_some()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nimbus-imgt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A minimal image rootfs: `/bin/busybox` and its applets as symlinks, a page for httpd.
fn busybox_rootfs(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy(BUSYBOX, dir.join("bin/busybox")).unwrap();
    for applet in ["sh", "id", "hostname", "ls", "cat", "echo", "sleep", "httpd", "wget", "nc", "pwd", "grep"]
    {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), "hello from the netns\n").unwrap();
}

fn spec(program: &str, script: &str, image: ImageRoot) -> (SandboxSpec, std::io::PipeReader) {
    let (reader, writer) = std::io::pipe().unwrap();
    let spec = SandboxSpec {
        program: program.into(),
        args: vec!["-c".into(), script.into()],
        cwd: "/work/dir".into(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        output: Some(writer.into()),
        limits: Limits { memory_mb: Some(128), ..Default::default() },
        fs: FsView { image_root: Some(image), ..Default::default() },
        ..Default::default()
    };
    (spec, reader)
}

async fn finish(instance: Box<dyn Instance>, reader: std::io::PipeReader) -> (ExitStatus, String) {
    let status =
        tokio::time::timeout(Duration::from_secs(30), instance.wait()).await.expect("sandbox exited");
    drop(instance);
    let mut out = String::new();
    std::fs::File::from(std::os::fd::OwnedFd::from(reader)).read_to_string(&mut out).unwrap();
    (status, out)
}

const SCRIPT: &str =
    "id -u; hostname; pwd; ls /; cat /etc/hostname; echo hi > /x; test -c /dev/null && echo devnull";

fn check_script_output(status: ExitStatus, out: &str) {
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "root by default in an image root: {out}");
    assert_eq!(lines[1], "web-1", "{out}");
    assert_eq!(lines[2], "/work/dir", "the working directory is made inside the image: {out}");
    for entry in ["bin", "dev", "etc", "proc", "www"] {
        assert!(out.lines().any(|l| l == entry), "{entry} in / : {out}");
    }
    assert!(out.contains("web-1\nweb-1\n") || lines.iter().filter(|l| **l == "web-1").count() == 2, "{out}");
    assert!(out.ends_with("devnull\n"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_a_directory_rootfs_writable_and_resolves_on_path() {
    if !can_run() {
        return;
    }
    let root = scratch("dir");
    busybox_rootfs(&root);
    let (mut s, reader) = spec("sh", SCRIPT, ImageRoot::Dir(root.clone()));
    s.hostname = Some("web-1".into());
    let instance = start(s);
    let (status, out) = finish(instance, reader).await;
    check_script_output(status, &out);
    assert_eq!(std::fs::read_to_string(root.join("x")).unwrap(), "hi\n", "the write lands in the rootfs");
    assert!(std::fs::read_to_string(root.join("etc/hosts")).unwrap().contains("localhost"));
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_an_overlay_and_writes_only_to_the_upper_layer() {
    if !can_run() {
        return;
    }
    let base = scratch("overlay");
    let (lower, top, upper, work) = (base.join("l0"), base.join("l1"), base.join("upper"), base.join("work"));
    for d in [&lower, &top, &upper, &work] {
        std::fs::create_dir_all(d).unwrap();
    }
    busybox_rootfs(&lower);
    // The top layer overrides a file of the bottom one.
    std::fs::write(lower.join("www/layer.txt"), "bottom").unwrap();
    std::fs::create_dir_all(top.join("www")).unwrap();
    std::fs::write(top.join("www/layer.txt"), "top").unwrap();
    let image = ImageRoot::Overlay { lower: vec![lower.clone(), top.clone()], upper: upper.clone(), work };
    let (mut s, reader) = spec("/bin/sh", &format!("{SCRIPT}; cat /www/layer.txt"), image);
    s.hostname = Some("web-1".into());
    let instance = start(s);
    let (status, out) = finish(instance, reader).await;
    assert!(out.ends_with("devnull\ntop"), "the topmost layer wins: {out}");
    check_script_output(status, out.trim_end_matches("top"));
    assert_eq!(std::fs::read_to_string(upper.join("x")).unwrap(), "hi\n", "the write lands in upper");
    assert!(!lower.join("x").exists() && !top.join("x").exists(), "lower layers stay untouched");
    assert!(!lower.join("etc").exists(), "generated /etc files go to upper only");
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_as_the_requested_user() {
    if !can_run() {
        return;
    }
    let root = scratch("user");
    busybox_rootfs(&root);
    let (mut s, reader) = spec(
        "sh",
        "id -u; id -g; echo x > /y || echo denied; echo t > /tmp/t && echo tmp-writable",
        ImageRoot::Dir(root.clone()),
    );
    s.user = Some((1234, 4321));
    s.fs.tmp_mb = 8;
    s.cwd = "/".into();
    let instance = start(s);
    let (status, out) = finish(instance, reader).await;
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    assert!(out.starts_with("1234\n4321\n"), "{out}");
    assert!(out.contains("denied"), "a non-root user cannot write the root-owned /: {out}");
    assert!(out.ends_with("tmp-writable\n"), "a private /tmp tmpfs when tmp_mb is set: {out}");
    assert!(!root.join("tmp/t").exists(), "/tmp is a tmpfs, not the image's directory");
}

#[tokio::test(flavor = "multi_thread")]
async fn root_in_an_image_keeps_only_the_default_capabilities() {
    if !can_run() {
        return;
    }
    let root = scratch("caps");
    busybox_rootfs(&root);
    let (mut s, reader) = spec("sh", "grep -E '^Cap(Bnd|Eff|Prm)' /proc/self/status", ImageRoot::Dir(root));
    s.cwd = "/".into();
    let instance = start(s);
    let (status, out) = finish(instance, reader).await;
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    // Docker's default set: no sys_admin, net_admin, sys_module, sys_ptrace…
    for set in ["CapPrm", "CapEff", "CapBnd"] {
        assert!(out.contains(&format!("{set}:\t00000000a80425fb")), "{set}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_program_names_the_exec_step() {
    if !can_run() {
        return;
    }
    let root = scratch("missing");
    busybox_rootfs(&root);
    let (s, _reader) = spec("no-such-program", "", ImageRoot::Dir(root));
    let err = backend().unwrap().start(s).err().expect("start fails").to_string();
    assert!(err.contains("exec no-such-program"), "{err}");
}

/// A loopback port nothing on the host listens on.
fn free_host_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn connect_retrying(pid: u32, port: u16) -> std::net::TcpStream {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match connect_in_netns(pid, port) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("nothing listens on {port} in {pid}'s netns: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn isolated_netns_is_reachable_only_through_connect_in_netns_and_can_be_joined() {
    if !can_run() {
        return;
    }
    let root = scratch("netns");
    busybox_rootfs(&root);
    let port = free_host_port();
    let (mut s, server_out) = spec("httpd", "", ImageRoot::Dir(root.clone()));
    s.args = vec!["-f".into(), "-p".into(), format!("127.0.0.1:{port}"), "-h".into(), "/www".into()];
    s.isolate_network = true;
    s.cwd = "/".into();
    let server = start(s);
    let pid = server.id();

    let mut stream = connect_retrying(pid, port).await;
    stream.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.") && response.contains("hello from the netns"), "{response}");

    let from_host = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    );
    assert!(from_host.is_err(), "the server's port must not be reachable on the host's loopback");

    // A second sandbox of the same "task" joins the namespace and reaches the server on lo.
    let (mut s, reader) =
        spec("sh", &format!("wget -q -O - http://127.0.0.1:{port}/index.html"), ImageRoot::Dir(root.clone()));
    s.join_netns_of = Some(pid);
    s.cwd = "/".into();
    let client = start(s);
    let (status, out) = finish(client, reader).await;
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    assert_eq!(out, "hello from the netns\n");

    server.destroy();
    let (status, _) = finish(server, server_out).await;
    assert_eq!(status, ExitStatus::Signal(9));
}

#[tokio::test(flavor = "multi_thread")]
async fn lambda_view_with_isolated_network_has_loopback_up() {
    if !can_run() {
        return;
    }
    // The host-view sandbox (no image root) with its own netns: lo is up, so a server bound
    // on 127.0.0.1 inside is reachable by a client inside.
    let (reader, writer) = std::io::pipe().unwrap();
    let spec = SandboxSpec {
        program: "/bin/busybox".into(),
        args: vec![
            "sh".into(),
            "-c".into(),
            "busybox nc -l -p 8080 -e busybox echo pong & for i in $(busybox seq 100); do busybox nc 127.0.0.1 8080 </dev/null && break; busybox sleep 0.1; done; wait".into(),
        ],
        cwd: "/tmp".into(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        output: Some(writer.into()),
        fs: FsView { tmp_mb: 1, ..Default::default() },
        isolate_network: true,
        ..Default::default()
    };
    let instance = start(spec);
    let (status, out) = finish(instance, reader).await;
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    assert!(out.contains("pong"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn binds_host_directories_writable_and_read_only() {
    if !can_run() {
        return;
    }
    let root = scratch("binds");
    busybox_rootfs(&root);
    let (rw, ro) = (scratch("binds-rw"), scratch("binds-ro"));
    std::fs::write(ro.join("given"), "from the host\n").unwrap();
    let script = "echo written > /vol/rw/file && cat /mnt/ro/given && \
                  if echo no > /mnt/ro/file 2>/dev/null; then echo ro-write-allowed; else echo ro-refused; fi";
    let (mut s, reader) = spec("sh", script, ImageRoot::Dir(root.clone()));
    s.fs.binds = vec![
        nimbus_sandbox::Bind { host: rw.clone(), inside: "/vol/rw".into(), read_only: false },
        nimbus_sandbox::Bind { host: ro.clone(), inside: "/mnt/ro".into(), read_only: true },
    ];
    let instance = start(s);
    let (status, out) = finish(instance, reader).await;
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    assert!(out.starts_with("from the host\n") && out.ends_with("ro-refused\n"), "{out}");
    assert_eq!(
        std::fs::read_to_string(rw.join("file")).unwrap(),
        "written\n",
        "the write lands on the host dir"
    );
    assert!(!ro.join("file").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_a_bind_through_a_symlink_in_the_image() {
    if !can_run() {
        return;
    }
    let root = scratch("bind-symlink");
    busybox_rootfs(&root);
    let outside = scratch("bind-symlink-outside");
    // `/data -> <outside>`: following it before the pivot would mkdir/mount on the host.
    std::os::unix::fs::symlink(&outside, root.join("data")).unwrap();
    let host = scratch("bind-symlink-src");
    for inside in ["/data/x", "/data", "/../x", "/proc/x"] {
        let (mut s, _reader) = spec("sh", "true", ImageRoot::Dir(root.clone()));
        s.fs.binds =
            vec![nimbus_sandbox::Bind { host: host.clone(), inside: inside.into(), read_only: false }];
        let err = backend().unwrap().start(s).err().unwrap_or_else(|| panic!("{inside} was accepted"));
        assert!(err.to_string().contains("mount point"), "{inside}: {err}");
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing was made outside the root");
    // A nested mount point through a symlink inside an earlier bind's directory (a volume
    // another container wrote) is refused too.
    let vol = scratch("bind-symlink-vol");
    std::os::unix::fs::symlink(&outside, vol.join("nested")).unwrap();
    let (mut s, _reader) = spec("sh", "true", ImageRoot::Dir(root.clone()));
    s.fs.binds = vec![
        nimbus_sandbox::Bind { host: vol.clone(), inside: "/vol".into(), read_only: false },
        nimbus_sandbox::Bind { host: host.clone(), inside: "/vol/nested/x".into(), read_only: false },
    ];
    let err = backend().unwrap().start(s).err().expect("a nested bind through a symlink was accepted");
    assert!(err.to_string().contains("symlink"), "{err}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing was made outside the root");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_limits_its_members_together() {
    if !can_run() {
        return;
    }
    let root = scratch("group");
    busybox_rootfs(&root);
    let group = backend()
        .unwrap()
        .create_group(&Limits { memory_mb: Some(48), cpu_millis: Some(500), ..Default::default() })
        .unwrap()
        .expect("the container backend makes groups");
    let mut members = Vec::new();
    for _ in 0..2 {
        let (mut s, reader) = spec("sh", "sleep 30", ImageRoot::Dir(root.clone()));
        s.limits = Limits::default();
        s.group = Some(group.clone());
        members.push((start(s), reader));
    }
    let paths: Vec<PathBuf> =
        members.iter().map(|(i, _)| PathBuf::from(i.inspect().cgroup.unwrap())).collect();
    let parent = paths[0].parent().unwrap().to_path_buf();
    assert_eq!(paths[1].parent().unwrap(), parent, "both members in one group cgroup: {paths:?}");
    // The group's CPU cap (first controller dir of the member: cpu on v1, the unified dir on v2).
    let v2 = parent.join("cpu.max").exists();
    let cpu = if v2 {
        std::fs::read_to_string(parent.join("cpu.max")).unwrap()
    } else {
        std::fs::read_to_string(parent.join("cpu.cfs_quota_us")).unwrap_or_default()
    };
    assert!(cpu.starts_with("50000"), "group cpu cap: {cpu:?} in {}", parent.display());
    if v2 {
        assert_eq!(
            std::fs::read_to_string(parent.join("memory.max")).unwrap().trim(),
            (48u64 << 20).to_string()
        );
    }
    for (i, _) in &members {
        i.destroy();
    }
    for (i, reader) in members {
        finish(i, reader).await;
    }
    drop(group);
    // The member cgroups went with their processes, and the group with its last handle.
    let gone = Instant::now() + Duration::from_secs(10);
    while parent.exists() && Instant::now() < gone {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!parent.exists(), "group cgroup removed: {}", parent.display());
}
