//! Just enough ELF to check an artifact: its machine, and that it is statically linked.

use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use kubelet_upstream::Arch;

const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
const CLASS_32: u8 = 1;
const CLASS_64: u8 = 2;
const LITTLE_ENDIAN: u8 = 1;
/// A program header that names a dynamic loader: the binary is dynamically linked.
const PT_INTERP: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfInfo {
    pub machine: u16,
    pub is_64_bit: bool,
    pub has_interpreter: bool,
}

pub fn read(path: &Utf8Path) -> Result<ElfInfo> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
    parse(&bytes).with_context(|| format!("{path} is not a valid ELF executable"))
}

pub fn parse(bytes: &[u8]) -> Result<ElfInfo> {
    if bytes.len() < 52 || bytes[..4] != ELF_MAGIC {
        bail!("no ELF header");
    }
    if bytes[5] != LITTLE_ENDIAN {
        bail!("big-endian ELF");
    }
    let is_64_bit = match bytes[4] {
        CLASS_64 => true,
        CLASS_32 => false,
        other => bail!("unknown ELF class {other}"),
    };
    let u16_at = |at: usize| -> Result<u16> {
        let b = bytes.get(at..at + 2).context("truncated header")?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| -> Result<u32> {
        let b = bytes.get(at..at + 4).context("truncated header")?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |at: usize| -> Result<u64> {
        let b = bytes.get(at..at + 8).context("truncated header")?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    let machine = u16_at(18)?;
    let (phoff, phentsize, phnum) = if is_64_bit {
        (
            u64_at(32)? as usize,
            u16_at(54)? as usize,
            u16_at(56)? as usize,
        )
    } else {
        (
            u32_at(28)? as usize,
            u16_at(42)? as usize,
            u16_at(44)? as usize,
        )
    };
    let mut has_interpreter = false;
    for index in 0..phnum {
        if u32_at(phoff + index * phentsize)? == PT_INTERP {
            has_interpreter = true;
        }
    }
    Ok(ElfInfo {
        machine,
        is_64_bit,
        has_interpreter,
    })
}

/// Fails unless the binary is a static executable for `arch`.
pub fn check(path: &Utf8Path, arch: Arch) -> Result<ElfInfo> {
    let info = read(path)?;
    if info.machine != arch.elf_machine() {
        bail!(
            "{path} is built for ELF machine {}, not {arch} ({}); the C compiler or GOARCH is wrong",
            info.machine,
            arch.elf_machine()
        );
    }
    if info.has_interpreter {
        bail!("{path} is dynamically linked (it names a program interpreter); it must link statically against musl");
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_running_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let info = parse(&std::fs::read(exe).unwrap()).unwrap();
        assert_eq!(Some(info.machine), Arch::host().map(Arch::elf_machine));
        assert!(info.is_64_bit);
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
        bytes[..4].copy_from_slice(&ELF_MAGIC);
        bytes[4] = CLASS_32;
        bytes[5] = LITTLE_ENDIAN;
        bytes[18..20].copy_from_slice(&40u16.to_le_bytes());
        bytes[28..32].copy_from_slice(&52u32.to_le_bytes());
        bytes[42..44].copy_from_slice(&32u16.to_le_bytes());
        bytes[44..46].copy_from_slice(&1u16.to_le_bytes());
        bytes[52..56].copy_from_slice(&PT_INTERP.to_le_bytes());
        let info = parse(&bytes).unwrap();
        assert_eq!(info.machine, Arch::Armv7.elf_machine());
        assert!(info.has_interpreter);
        bytes[52..56].copy_from_slice(&1u32.to_le_bytes());
        assert!(!parse(&bytes).unwrap().has_interpreter);
    }
}
