//! [`Maildir`]: the local outbox `mail.send` writes to by default. One file per message,
//! named after its Message-ID, so delivering the same message twice leaves one file.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::MailError;
use crate::render::check_message_id;
use crate::{MAILDIR_ENTRIES_MAX, MESSAGE_BYTES_MAX};

/// Directories are private to the kernel's user: messages are what agents wrote.
const DIR_MODE: u32 = 0o700;
/// Message files likewise.
const FILE_MODE: u32 = 0o600;

/// Makes every temporary name of this process unique, so two deliveries of the same
/// message at once never write the same file in `tmp/`.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A Maildir: `tmp/`, `new/` and `cur/` under one root.
///
/// A message is written to `tmp/`, synced, then renamed into `new/`, so a reader of
/// `new/` never sees half a message. Its name in `new/` is its Message-ID without the angle
/// brackets (`<x@y>` → `new/x@y`); `cur/` may hold it as `x@y` or `x@y:2,FLAGS` once a
/// reader has seen it.
#[derive(Debug, Clone)]
pub struct Maildir {
    root: PathBuf,
    tmp: PathBuf,
    new: PathBuf,
    cur: PathBuf,
}

impl Maildir {
    /// Opens the Maildir at `root`, creating `root` (and its parents), `tmp/`, `new/` and
    /// `cur/` with mode 0700 where they do not exist. Existing directories keep their mode.
    pub fn open(root: &Path) -> Result<Self, MailError> {
        let maildir = Self {
            root: root.to_path_buf(),
            tmp: root.join("tmp"),
            new: root.join("new"),
            cur: root.join("cur"),
        };
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(root)
            .map_err(|source| MailError::MaildirCreate {
                path: root.to_path_buf(),
                source,
            })?;
        for dir in [&maildir.tmp, &maildir.new, &maildir.cur] {
            match DirBuilder::new().mode(DIR_MODE).create(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(MailError::MaildirCreate {
                        path: dir.clone(),
                        source,
                    });
                }
            }
            // `create` reports AlreadyExists for a file too; and a symlink elsewhere is refused.
            let meta = fs::symlink_metadata(dir).map_err(|source| MailError::MaildirRead {
                path: dir.clone(),
                source,
            })?;
            if !meta.is_dir() {
                return Err(MailError::MaildirNotDir { path: dir.clone() });
            }
        }
        Ok(maildir)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Delivers one message (`bytes` as rendered, at most [`MESSAGE_BYTES_MAX`]) and returns
    /// its path in `new/`. If a message with this id is already in `new/` or `cur/`, returns
    /// that file's path and writes nothing: delivery is idempotent per Message-ID (a retried
    /// effect must not mail twice), and the first delivery's bytes win.
    pub fn deliver(&self, message_id: &str, bytes: &[u8]) -> Result<PathBuf, MailError> {
        let name = check_message_id(message_id)?;
        if bytes.len() > MESSAGE_BYTES_MAX {
            return Err(MailError::MessageTooLarge { bytes: bytes.len() });
        }
        if let Some(existing) = self.find(name)? {
            return Ok(existing);
        }

        let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .tmp
            .join(format!("{name}.{}.{seq}", std::process::id()));
        if let Err(source) = write_synced(&tmp, bytes) {
            let _ = fs::remove_file(&tmp); // best effort: the error below is what matters
            return Err(MailError::MaildirWrite { path: tmp, source });
        }
        let target = self.new.join(name);
        if let Err(source) = fs::rename(&tmp, &target) {
            let _ = fs::remove_file(&tmp);
            return Err(MailError::MaildirRename {
                from: tmp,
                to: target,
                source,
            });
        }
        // The rename is durable once the directory entry is.
        sync_dir(&self.new).map_err(|source| MailError::MaildirWrite {
            path: self.new.clone(),
            source,
        })?;
        Ok(target)
    }

    /// Every message file in `new/` and `cur/` (dot files skipped), sorted by path (so
    /// `cur/` before `new/`). At most [`MAILDIR_ENTRIES_MAX`] per directory, else an error.
    pub fn messages(&self) -> Result<Vec<PathBuf>, MailError> {
        let mut paths = Vec::new();
        for dir in [&self.new, &self.cur] {
            for_each_entry(dir, |name| {
                if !name.starts_with('.') {
                    paths.push(dir.join(name));
                }
                false
            })?;
        }
        paths.sort();
        Ok(paths)
    }

    /// The message named `name` in `new/`, or in `cur/` with or without its `:2,FLAGS`.
    fn find(&self, name: &str) -> Result<Option<PathBuf>, MailError> {
        let in_new = self.new.join(name);
        match fs::symlink_metadata(&in_new) {
            Ok(_) => return Ok(Some(in_new)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(MailError::MaildirRead {
                    path: in_new,
                    source,
                });
            }
        }
        let mut found = None;
        for_each_entry(&self.cur, |entry| {
            let base = entry.split_once(':').map_or(entry, |(base, _info)| base);
            if base == name {
                found = Some(self.cur.join(entry));
            }
            found.is_some()
        })?;
        Ok(found)
    }
}

/// Calls `f` with each UTF-8 entry name of `dir` until it returns true; more than
/// [`MAILDIR_ENTRIES_MAX`] entries is an error. Names that are not UTF-8 cannot be ours
/// (Message-IDs are ASCII) and are skipped.
fn for_each_entry(dir: &Path, mut f: impl FnMut(&str) -> bool) -> Result<(), MailError> {
    let read_err = |source| MailError::MaildirRead {
        path: dir.to_path_buf(),
        source,
    };
    let entries = fs::read_dir(dir).map_err(read_err)?;
    for (i, entry) in entries.enumerate() {
        if i >= MAILDIR_ENTRIES_MAX {
            return Err(MailError::MaildirFull {
                path: dir.to_path_buf(),
            });
        }
        let entry = entry.map_err(read_err)?;
        if let Some(name) = entry.file_name().to_str()
            && f(name)
        {
            break;
        }
    }
    Ok(())
}

/// Creates `path` (which must not exist), writes `bytes` and syncs them to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn open_creates_private_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a/outbox");
        let md = Maildir::open(&root).unwrap();
        assert_eq!(md.root(), root);
        for dir in ["", "tmp", "new", "cur"] {
            let mode = fs::metadata(root.join(dir)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, DIR_MODE, "{dir}");
        }
        Maildir::open(&root).unwrap(); // opening again is fine
        assert!(md.messages().unwrap().is_empty());
    }

    #[test]
    fn open_refuses_a_file_where_a_directory_belongs() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("new"), b"").unwrap();
        let err = Maildir::open(tmp.path()).unwrap_err();
        assert!(matches!(err, MailError::MaildirNotDir { path } if path.ends_with("new")));
    }

    #[test]
    fn deliver_writes_one_file_in_new_named_by_the_message_id() {
        let tmp = tempfile::tempdir().unwrap();
        let md = Maildir::open(tmp.path()).unwrap();
        let path = md
            .deliver("<m.1@runloop.test>", b"Subject: a\r\n\r\nbody\r\n")
            .unwrap();
        assert_eq!(path, tmp.path().join("new/m.1@runloop.test"));
        assert_eq!(fs::read(&path).unwrap(), b"Subject: a\r\n\r\nbody\r\n");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            FILE_MODE
        );
        assert!(names(&tmp.path().join("tmp")).is_empty());
        assert_eq!(md.messages().unwrap(), [path]);
    }

    #[test]
    fn delivering_the_same_message_id_twice_leaves_one_file() {
        let tmp = tempfile::tempdir().unwrap();
        let md = Maildir::open(tmp.path()).unwrap();
        let first = md.deliver("<same@runloop.test>", b"first").unwrap();
        let second = md.deliver("<same@runloop.test>", b"second").unwrap();
        assert_eq!(first, second);
        assert_eq!(names(&tmp.path().join("new")), ["same@runloop.test"]);
        assert_eq!(
            fs::read(&first).unwrap(),
            b"first",
            "the first delivery's bytes win"
        );
        assert!(names(&tmp.path().join("tmp")).is_empty());
    }

    #[test]
    fn different_message_ids_give_two_files() {
        let tmp = tempfile::tempdir().unwrap();
        let md = Maildir::open(tmp.path()).unwrap();
        let b = md.deliver("<b@runloop.test>", b"b").unwrap();
        let a = md.deliver("<a@runloop.test>", b"a").unwrap();
        assert_eq!(
            names(&tmp.path().join("new")),
            ["a@runloop.test", "b@runloop.test"]
        );
        assert_eq!(md.messages().unwrap(), [a, b]);
        assert!(names(&tmp.path().join("tmp")).is_empty());
    }

    #[test]
    fn a_message_a_reader_moved_to_cur_is_not_delivered_again() {
        let tmp = tempfile::tempdir().unwrap();
        let md = Maildir::open(tmp.path()).unwrap();
        let new = md.deliver("<seen@runloop.test>", b"x").unwrap();
        let cur = tmp.path().join("cur/seen@runloop.test:2,S");
        fs::rename(&new, &cur).unwrap();
        fs::write(tmp.path().join("cur/seen@runloop.test.other:2,"), b"y").unwrap();
        assert_eq!(md.deliver("<seen@runloop.test>", b"x").unwrap(), cur);
        assert!(names(&tmp.path().join("new")).is_empty());
        let listed = md.messages().unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn bad_ids_and_oversized_messages_write_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let md = Maildir::open(tmp.path()).unwrap();
        for id in [
            "<../../etc/passwd@x>",
            "<a:2,S@x>",
            "no-brackets@x",
            "<.hidden@x>",
        ] {
            assert!(
                matches!(md.deliver(id, b"x"), Err(MailError::MessageId { .. })),
                "{id}"
            );
        }
        let big = vec![b'x'; MESSAGE_BYTES_MAX + 1];
        assert!(matches!(
            md.deliver("<big@x>", &big),
            Err(MailError::MessageTooLarge { bytes }) if bytes == MESSAGE_BYTES_MAX + 1
        ));
        for dir in ["tmp", "new", "cur"] {
            assert!(names(&tmp.path().join(dir)).is_empty(), "{dir}");
        }
    }
}
