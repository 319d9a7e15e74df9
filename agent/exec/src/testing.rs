//! Test fixtures shared by this crate's tests and the integration tests.

use std::io;
use std::path::Path;
use std::process::Command;

/// Builds a ~2 MB busybox-static rootfs at `root` (machine.md's recipe): `/bin/busybox` with
/// its applets linked, `/usr/lib/os-release` (+ `/etc/os-release`), minimal passwd/group.
/// Needs the `busybox-static` package (`/bin/busybox`).
pub fn build_busybox_rootfs(root: &Path) -> io::Result<()> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "/bin/busybox is missing: install the busybox-static package",
        ));
    }
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "usr/lib", "etc", "tmp", "proc", "sys", "dev", "root",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy(busybox, root.join("bin/busybox"))?;
    // A parallel test forking while the copy was open for writing holds that descriptor until
    // its exec: running the fresh copy then fails with ETXTBSY for a moment. Try again.
    let mut tries = 0;
    let status = loop {
        match Command::new("chroot")
            .arg(root)
            .args(["/bin/busybox", "--install", "-s"])
            .status()
        {
            // chroot reports the busy file as "cannot execute" (126).
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {}
            Ok(s) if s.code() == Some(126) && tries < 50 => {}
            other => break other?,
        }
        tries += 1;
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    if !status.success() {
        return Err(io::Error::other(format!("busybox --install failed: {status}")));
    }
    std::fs::write(
        root.join("usr/lib/os-release"),
        "ID=cortex-test\nNAME=\"Cortex test rootfs\"\n",
    )?;
    let _ = std::fs::remove_file(root.join("etc/os-release"));
    std::os::unix::fs::symlink("../usr/lib/os-release", root.join("etc/os-release"))?;
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(root.join("etc/group"), "root:x:0:\n")?;
    Ok(())
}
