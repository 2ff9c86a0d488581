//! The versions of DRBD on a node, as `drbdadm --version` prints them (`DRBDADM_VERSION=9.22.0`
//! for drbd-utils, `DRBD_KERNEL_VERSION=9.2.12` for the loaded kernel module, `0` without one),
//! and what a resource file may say because of them.

use std::fmt;

/// A version as DRBD numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// `9.22.0`, `9.2.12-rc.1` (a suffix after the numbers is ignored); `None` for anything
    /// else, `0` included.
    pub fn parse(text: &str) -> Option<Version> {
        let numbers = text.trim().split(['-', '+', ' ']).next()?;
        let mut parts = numbers.split('.').map(|p| p.parse::<u32>());
        let major = parts.next()?.ok()?;
        let minor = parts.next()?.ok()?;
        let patch = match parts.next() {
            Some(p) => p.ok()?,
            None => 0,
        };
        (major > 0).then_some(Version::new(major, minor, patch))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The oldest drbd-utils whose parser takes `tiebreaker` in a volume section (older ones refuse
/// the file: "'device | disk | meta-disk | flex-meta-disk | }' expected"); LINSTOR's threshold.
pub const TIEBREAKER_MIN_UTILS: Version = Version::new(9, 34, 0);

/// The oldest kernel module that acts on a volume's `tiebreaker`; LINSTOR's threshold.
pub const TIEBREAKER_MIN_KERNEL: Version = Version::new(9, 3, 1);

/// drbd-utils' and the kernel module's versions on a node; `None` where unknown or absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrbdVersions {
    pub utils: Option<Version>,
    pub kernel: Option<Version>,
}

impl DrbdVersions {
    /// From the output of `drbdadm --version`.
    pub fn from_drbdadm_version(output: &str) -> DrbdVersions {
        let value = |key: &str| {
            output
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(Version::parse)
        };
        DrbdVersions {
            utils: value("DRBDADM_VERSION="),
            kernel: value("DRBD_KERNEL_VERSION="),
        }
    }

    /// Whether a volume section may say `tiebreaker`: drbd-utils parses it and the kernel
    /// module acts on it.
    pub fn tiebreaker_keyword(&self) -> bool {
        self.utils.is_some_and(|v| v >= TIEBREAKER_MIN_UTILS)
            && self.kernel.is_some_and(|v| v >= TIEBREAKER_MIN_KERNEL)
    }
}

impl fmt::Display for DrbdVersions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |v: Option<Version>| v.map_or("none".to_string(), |v| v.to_string());
        write!(
            f,
            "DRBD utils: {}, kmod: {}",
            shown(self.utils),
            shown(self.kernel)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_drbdadm_version() {
        let here = "DRBDADM_BUILDTAG=GIT-hash:\\ 409097fe\nDRBDADM_API_VERSION=2\n\
                    DRBD_KERNEL_VERSION_CODE=0x000000\nDRBD_KERNEL_VERSION=0\n\
                    DRBDADM_VERSION_CODE=0x091600\nDRBDADM_VERSION=9.22.0\n";
        let versions = DrbdVersions::from_drbdadm_version(here);
        assert_eq!(versions.utils, Some(Version::new(9, 22, 0)));
        assert_eq!(versions.kernel, None, "no module loaded");
        assert!(!versions.tiebreaker_keyword());
        assert_eq!(versions.to_string(), "DRBD utils: 9.22.0, kmod: none");
        assert_eq!(Version::parse("9.2.12-rc.1"), Some(Version::new(9, 2, 12)));
        assert_eq!(Version::parse("unknown"), None);
    }

    #[test]
    fn the_tiebreaker_keyword_needs_both_thresholds() {
        let with = |utils: Version, kernel: Version| DrbdVersions {
            utils: Some(utils),
            kernel: Some(kernel),
        };
        assert!(with(TIEBREAKER_MIN_UTILS, TIEBREAKER_MIN_KERNEL).tiebreaker_keyword());
        assert!(!with(Version::new(9, 33, 9), TIEBREAKER_MIN_KERNEL).tiebreaker_keyword());
        assert!(!with(TIEBREAKER_MIN_UTILS, Version::new(9, 3, 0)).tiebreaker_keyword());
        assert!(!with(Version::new(9, 22, 0), Version::new(9, 2, 12)).tiebreaker_keyword());
    }
}
