//! The syscall numbers the seccomp allowlist names, spelled out per architecture.
//!
//! A BPF filter compares raw numbers, and they differ between architectures (x86_64's
//! `read` is 0, aarch64's is 63; aarch64 has no `poll` at all). Both tables are plain data
//! compiled on every target, so either can be read and reviewed anywhere; the build
//! target's table is picked at compile time as [`nr`], beside the matching seccompiler
//! architecture [`TARGET_ARCH`]. A test checks the build target's table against the libc
//! crate's `SYS_*` constants (on x86_64 CI: the x86_64 table; on an aarch64 build: that
//! one). Any other architecture does not compile.

/// Defines one `pub const SYS_<name>: i64` per entry, and (for the test on the matching
/// target) the table of `(name, ours, libc's)`.
macro_rules! syscall_numbers {
    ($arch:literal; $($name:ident = $nr:literal,)*) => {
        $(
            #[allow(non_upper_case_globals, reason = "spelled like libc's SYS_* constants")]
            pub const $name: i64 = $nr;
        )*

        /// Each number beside the libc crate's for the build target.
        #[cfg(all(test, target_arch = $arch))]
        pub(crate) fn against_libc() -> Vec<(&'static str, i64, i64)> {
            vec![$((stringify!($name), $name, libc::$name as i64)),*]
        }
    };
}

/// x86_64 (`arch/x86/entry/syscalls/syscall_64.tbl`).
pub mod x86_64 {
    syscall_numbers! { "x86_64";
        SYS_read = 0,
        SYS_write = 1,
        SYS_close = 3,
        SYS_fstat = 5,
        SYS_poll = 7,
        SYS_lseek = 8,
        SYS_mmap = 9,
        SYS_mprotect = 10,
        SYS_munmap = 11,
        SYS_brk = 12,
        SYS_rt_sigaction = 13,
        SYS_rt_sigprocmask = 14,
        SYS_rt_sigreturn = 15,
        SYS_ioctl = 16,
        SYS_sched_yield = 24,
        SYS_mremap = 25,
        SYS_madvise = 28,
        SYS_nanosleep = 35,
        SYS_getpid = 39,
        SYS_sendto = 44,
        SYS_recvfrom = 45,
        SYS_exit = 60,
        SYS_fcntl = 72,
        SYS_sigaltstack = 131,
        SYS_gettid = 186,
        SYS_futex = 202,
        SYS_sched_getaffinity = 204,
        SYS_clock_gettime = 228,
        SYS_clock_nanosleep = 230,
        SYS_exit_group = 231,
        SYS_tgkill = 234,
        SYS_newfstatat = 262,
        SYS_ppoll = 271,
        SYS_getrandom = 318,
        SYS_membarrier = 324,
        SYS_statx = 332,
    }
}

/// aarch64 (the generic table, `include/uapi/asm-generic/unistd.h`). It has no `poll`:
/// libc implements it with `ppoll`.
pub mod aarch64 {
    syscall_numbers! { "aarch64";
        SYS_read = 63,
        SYS_write = 64,
        SYS_close = 57,
        SYS_fstat = 80,
        SYS_lseek = 62,
        SYS_mmap = 222,
        SYS_mprotect = 226,
        SYS_munmap = 215,
        SYS_brk = 214,
        SYS_rt_sigaction = 134,
        SYS_rt_sigprocmask = 135,
        SYS_rt_sigreturn = 139,
        SYS_ioctl = 29,
        SYS_sched_yield = 124,
        SYS_mremap = 216,
        SYS_madvise = 233,
        SYS_nanosleep = 101,
        SYS_getpid = 172,
        SYS_sendto = 206,
        SYS_recvfrom = 207,
        SYS_exit = 93,
        SYS_fcntl = 25,
        SYS_sigaltstack = 132,
        SYS_gettid = 178,
        SYS_futex = 98,
        SYS_sched_getaffinity = 123,
        SYS_clock_gettime = 113,
        SYS_clock_nanosleep = 115,
        SYS_exit_group = 94,
        SYS_tgkill = 131,
        SYS_newfstatat = 79,
        SYS_ppoll = 73,
        SYS_getrandom = 278,
        SYS_membarrier = 283,
        SYS_statx = 291,
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86_64 as nr;

#[cfg(target_arch = "aarch64")]
pub use aarch64 as nr;

/// The seccompiler architecture of the build target.
#[cfg(target_arch = "x86_64")]
pub const TARGET_ARCH: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;

/// The seccompiler architecture of the build target.
#[cfg(target_arch = "aarch64")]
pub const TARGET_ARCH: seccompiler::TargetArch = seccompiler::TargetArch::aarch64;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("the sandbox's seccomp allowlist has syscall numbers for x86_64 and aarch64 only");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_targets_table_matches_libc() {
        let table = nr::against_libc();
        assert!(
            table.len() >= 34,
            "every allowlisted syscall is in the table"
        );
        for (name, ours, libc) in table {
            assert_eq!(ours, libc, "{name}");
        }
    }

    #[test]
    fn the_two_tables_differ_where_the_architectures_do() {
        assert_eq!(x86_64::SYS_read, 0);
        assert_eq!(aarch64::SYS_read, 63);
        assert_ne!(x86_64::SYS_mmap, aarch64::SYS_mmap);
    }
}
