//! Builds `relay/gpudock-relay.rs` (std only) into a statically linked
//! executable that the binary embeds (see `src/docker/port.rs`): rustc
//! alone, no cargo, no dependencies; glibc's static libraries come with
//! Debian's libc6-dev, which every Rust build on Debian has.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    // Relative relocations packed (DT_RELR, glibc >= 2.36, lld): 1.1 MiB of
    // `.rela.dyn` that the loader read at every start, and that stayed
    // resident, shrinks to a few KiB (issue 11: RSS after start).
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    link_order();
    let src = "relay/gpudock-relay.rs";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-changed=build.rs");
    let (Some(out_dir), Ok(target)) = (std::env::var_os("OUT_DIR"), std::env::var("TARGET")) else {
        panic!("build.rs runs under cargo (OUT_DIR and TARGET)");
    };
    let out = PathBuf::from(out_dir).join("gpudock-relay");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "bin",
            "--target",
            &target,
        ])
        .args([
            "-C",
            "opt-level=3",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
        ])
        .args(["-C", "codegen-units=1", "-C", "target-feature=+crt-static"])
        .arg("-o")
        .arg(&out)
        .arg(src)
        .status();
    let Ok(status) = status else {
        panic!("cannot run rustc for relay/gpudock-relay.rs");
    };
    assert!(
        status.success(),
        "building relay/gpudock-relay.rs (statically linked) failed: install libc6-dev"
    );
}

/// Release only: lld lays out the functions that start-up and the first
/// sign-in run (`link/hot-symbols.txt`, made by `link/hot-symbols.sh`) together
/// at the start of `.text`. Each page fault on the binary's code maps a 64 KiB
/// window around it; with that code scattered over 27 MiB, most of `.text`
/// became resident (issue 11: RSS after start). Names the link does not have
/// (a stale list) are skipped without a warning, so the list never breaks a
/// build; it only ages. The names carry crate hashes that differ between a
/// plain release build and one with `--bench` (see `link/hot-symbols.sh`).
/// Link arguments reach the final link alone: no
/// dependency is rebuilt. `GPUDOCK_LINK_MAP=path` also writes lld's link map
/// there (what `link/hot-symbols.sh` reads).
fn link_order() {
    let list = "link/hot-symbols.txt";
    println!("cargo:rerun-if-changed={list}");
    println!("cargo:rerun-if-env-changed=GPUDOCK_LINK_MAP");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    // rustc links x86_64-unknown-linux-gnu with its own lld since 1.90,
    // unless another linker is asked for (GNU ld knows no ordering file).
    let own_linker = std::env::var_os("RUSTC_LINKER").is_none()
        && !std::env::var("CARGO_ENCODED_RUSTFLAGS")
            .is_ok_and(|f| f.contains("linker") || f.contains("link-self"));
    let lld = own_linker && std::env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu");
    if !(release && lld) {
        return;
    }
    let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        panic!("build.rs runs under cargo (CARGO_MANIFEST_DIR)");
    };
    let path = PathBuf::from(dir).join(list);
    if path.is_file() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            path.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
    if let Some(map) = std::env::var_os("GPUDOCK_LINK_MAP") {
        let map = PathBuf::from(map);
        println!("cargo:rustc-link-arg-bins=-Wl,-Map={}", map.display());
        println!("cargo:rustc-link-arg-bins=-Wl,--no-demangle");
    }
}
