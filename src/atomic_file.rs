//! Output files that appear complete or not at all.
//!
//! Every file tunnelwatch writes (tables, JSON, the report, figures, synthetic captures) goes
//! through [`AtomicFile`]: bytes go to `<name>.partial` in the same folder, and only
//! [`AtomicFile::commit`] flushes, fsyncs and renames it to `<name>`. A rename within one
//! filesystem is atomic (POSIX `rename(2)`), so a reader, or a run killed at any instant, sees
//! the previous file or the new complete one, never a prefix. An error or a drop without commit
//! removes the temporary file; a run killed outright (SIGKILL, power loss) can leave a stale
//! `<name>.partial` behind, which the next write of the same file truncates and replaces.
//!
//! Paths that are not regular files (`/dev/null`, a named pipe) are written in place: renaming
//! over them would replace the device or pipe. A symbolic link is followed, so the file it points
//! to is replaced and the link kept.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Suffix of the temporary name beside the final one.
pub const TEMP_SUFFIX: &str = ".partial";

/// A file being written under a temporary name; see the [module docs](self).
pub struct AtomicFile {
    /// The name the file gets on commit.
    path: PathBuf,
    /// Where bytes go until then; `None` when writing in place (not a regular file).
    temp: Option<PathBuf>,
    out: Option<BufWriter<File>>,
    committed: bool,
}

impl AtomicFile {
    /// Starts writing `path`: creates (or truncates) `<path>.partial`.
    pub fn create(path: impl AsRef<Path>) -> io::Result<AtomicFile> {
        let path = resolve_link(path.as_ref())?;
        let in_place = fs::metadata(&path).is_ok_and(|m| !m.is_file());
        if in_place {
            let file = fs::OpenOptions::new().write(true).open(&path)?;
            return Ok(AtomicFile {
                path,
                temp: None,
                out: Some(BufWriter::new(file)),
                committed: false,
            });
        }
        let temp = temp_path(&path)?;
        let file = File::create(&temp)?;
        Ok(AtomicFile {
            path,
            temp: Some(temp),
            out: Some(BufWriter::with_capacity(64 * 1024, file)),
            committed: false,
        })
    }

    /// The final name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes, fsyncs and renames the temporary file to the final name. On error the
    /// temporary file is removed and the final name is left as it was.
    pub fn commit(mut self) -> io::Result<()> {
        let Some(out) = self.out.take() else {
            return Err(io::Error::other("atomic file already closed"));
        };
        let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        let Some(temp) = &self.temp else {
            self.committed = true;
            return Ok(());
        };
        file.sync_all()?;
        drop(file);
        fs::rename(temp, &self.path)?;
        self.committed = true;
        sync_parent(&self.path);
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.out {
            Some(out) => out.write(buf),
            None => Err(io::Error::other("atomic file already closed")),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.out {
            Some(out) => out.write_all(buf),
            None => Err(io::Error::other("atomic file already closed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Close before removing (required on Windows, harmless elsewhere); the buffered tail is
        // discarded with the file, so a flush error here does not matter.
        drop(self.out.take());
        if let Some(temp) = &self.temp {
            let _ = fs::remove_file(temp);
        }
    }
}

/// Writes `path` atomically: `write` fills the file, then it is committed. If `write` fails, the
/// error is returned, the temporary file removed and `path` left untouched.
pub fn write_atomically<T>(
    path: &Path,
    write: impl FnOnce(&mut AtomicFile) -> io::Result<T>,
) -> io::Result<T> {
    let mut file = AtomicFile::create(path)?;
    let value = write(&mut file)?;
    file.commit()?;
    Ok(value)
}

/// [`write_atomically`] for bytes already in memory.
pub fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomically(path, |f| f.write_all(bytes))
}

/// `<name>.partial` beside `path`: same folder, so the rename never crosses filesystems.
fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let Some(name) = path.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file name", path.display()),
        ));
    };
    let mut temp: OsString = name.to_os_string();
    temp.push(TEMP_SUFFIX);
    Ok(path.with_file_name(temp))
}

/// The file a symbolic link points to (so the link survives the rename); other paths as given.
fn resolve_link(path: &Path) -> io::Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => match fs::canonicalize(path) {
            Ok(target) => Ok(target),
            // A dangling link: replace the link itself.
            Err(_) => Ok(path.to_path_buf()),
        },
        _ => Ok(path.to_path_buf()),
    }
}

/// Makes the rename itself durable. Best effort: some filesystems refuse to fsync a folder, and
/// the file is already complete under its final name either way.
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if let Ok(dir) = File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tunnelwatch-atomic-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn commit_renames_and_leaves_no_temp() {
        let dir = scratch("commit");
        let path = dir.join("out.json");
        write_atomically(&path, |f| f.write_all(b"{}\n")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}\n");
        assert_eq!(entries(&dir), ["out.json"]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bytes_are_under_the_temporary_name_until_commit() {
        let dir = scratch("pending");
        let path = dir.join("flows.parquet");
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"PAR1").unwrap();
        f.flush().unwrap();
        assert!(!path.exists());
        assert_eq!(
            fs::read(dir.join("flows.parquet.partial")).unwrap(),
            b"PAR1"
        );
        f.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"PAR1");
        assert_eq!(entries(&dir), ["flows.parquet"]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn error_mid_write_leaves_neither_file_nor_temp() {
        let dir = scratch("error");
        let path = dir.join("summary.json");
        let result: io::Result<()> = write_atomically(&path, |f| {
            f.write_all(&[b'x'; 100_000])?;
            Err(io::Error::other("disk on fire"))
        });
        assert_eq!(result.unwrap_err().to_string(), "disk on fire");
        assert!(entries(&dir).is_empty(), "left {:?}", entries(&dir));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn error_mid_write_keeps_the_previous_file_whole() {
        let dir = scratch("keep");
        let path = dir.join("report.html");
        fs::write(&path, "<html>old</html>").unwrap();
        let result: io::Result<()> = write_atomically(&path, |f| {
            f.write_all(b"<html>new, half")?;
            Err(io::Error::other("interrupted"))
        });
        assert!(result.is_err());
        assert_eq!(fs::read_to_string(&path).unwrap(), "<html>old</html>");
        assert_eq!(entries(&dir), ["report.html"]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn drop_without_commit_removes_the_temp() {
        let dir = scratch("drop");
        let path = dir.join("a.csv");
        {
            let mut f = AtomicFile::create(&path).unwrap();
            f.write_all(b"a,b\n1,").unwrap();
        }
        assert!(entries(&dir).is_empty(), "left {:?}", entries(&dir));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stale_temp_from_a_killed_run_is_replaced() {
        let dir = scratch("stale");
        let path = dir.join("series.csv");
        fs::write(
            dir.join("series.csv.partial"),
            "half a table from a killed run",
        )
        .unwrap();
        write_bytes_atomically(&path, b"window\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"window\n");
        assert_eq!(entries(&dir), ["series.csv"]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn same_stem_different_extensions_do_not_share_a_temp() {
        let dir = scratch("stems");
        let a = AtomicFile::create(dir.join("hosts.parquet")).unwrap();
        let b = AtomicFile::create(dir.join("hosts.csv")).unwrap();
        assert_eq!(
            entries(&dir),
            ["hosts.csv.partial", "hosts.parquet.partial"]
        );
        a.commit().unwrap();
        b.commit().unwrap();
        assert_eq!(entries(&dir), ["hosts.csv", "hosts.parquet"]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_folder_is_an_error_not_a_panic() {
        let dir = scratch("missing");
        let path = dir.join("no/such/folder/x.json");
        assert!(write_bytes_atomically(&path, b"{}").is_err());
        assert!(write_bytes_atomically(Path::new("/"), b"{}").is_err());
        fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn device_paths_are_written_in_place() {
        use std::os::unix::fs::FileTypeExt;
        write_bytes_atomically(Path::new("/dev/null"), b"discarded").unwrap();
        assert!(fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
    }

    #[cfg(unix)]
    #[test]
    fn symlink_is_kept_and_its_target_replaced() {
        let dir = scratch("link");
        let target = dir.join("real.json");
        let link = dir.join("link.json");
        fs::write(&target, "old").unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_bytes_atomically(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&target).unwrap(), b"new");
        fs::remove_dir_all(dir).unwrap();
    }
}
