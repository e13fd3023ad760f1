use super::*;
use goblin::elf::header::{ELFCLASS32, ELFMAG};

#[test]
fn reads_the_running_test_binary() {
    let exe = std::env::current_exe().unwrap();
    let info = parse(&std::fs::read(exe).unwrap()).unwrap();
    assert_eq!(Some(info.machine), Arch::host().map(Arch::elf_machine));
    assert!(info.is_64_bit);
    // Rust test binaries link the host's C library dynamically.
    assert!(info.interpreter.is_some());
    assert!(
        info.needed.iter().any(|lib| lib.starts_with("libc.so")),
        "{:?}",
        info.needed
    );
}

#[test]
fn rejects_non_elf() {
    assert!(parse(b"#!/bin/sh\necho not an executable, just a script with text").is_err());
    assert!(parse(&[0x7f, b'E', b'L', b'F']).is_err());
}

#[test]
fn finds_an_interpreter_header() {
    // A minimal 32-bit ELF header with one PT_INTERP program header right after it.
    let mut bytes = vec![0u8; 52 + 32];
    bytes[..4].copy_from_slice(ELFMAG);
    bytes[4] = ELFCLASS32;
    bytes[5] = ELFDATA2LSB;
    bytes[18..20].copy_from_slice(&40u16.to_le_bytes());
    bytes[28..32].copy_from_slice(&52u32.to_le_bytes());
    bytes[42..44].copy_from_slice(&32u16.to_le_bytes());
    bytes[44..46].copy_from_slice(&1u16.to_le_bytes());
    bytes[52..56].copy_from_slice(&PT_INTERP.to_le_bytes());
    bytes.extend_from_slice(b"/lib/ld-musl-armhf.so.1\0");
    bytes[56..60].copy_from_slice(&84u32.to_le_bytes());
    bytes[68..72].copy_from_slice(&24u32.to_le_bytes());
    let info = parse(&bytes).unwrap();
    assert_eq!(info.machine, Arch::Armv7.elf_machine());
    assert!(info.has_interpreter);
    assert_eq!(info.interpreter.as_deref(), Some("/lib/ld-musl-armhf.so.1"));
    bytes[52..56].copy_from_slice(&1u32.to_le_bytes());
    assert!(!parse(&bytes).unwrap().has_interpreter);
}
