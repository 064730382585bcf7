//! [`FsStorage`]: a [`StorageBackend`] in a directory of the local file
//! system.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use arcly_core::traits::{ObjectWriter, StorageBackend};
use arcly_core::{Result, StreamError};
use async_trait::async_trait;
use bytes::Bytes;

/// Numbers the temporary files of [`FsStorage::put`] within the process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Objects as files under a root directory.
///
/// Paths are `/`-separated, relative to the root, and checked: an empty
/// path or segment, `.`, `..`, a leading `/`, a `\` or a NUL byte is
/// refused ([`StreamError::Config`]), so nothing is written outside the
/// root. Parent directories are created as needed. File I/O runs on
/// tokio's blocking threads, never on the runtime's workers.
///
/// # Durability
/// - [`put`](StorageBackend::put) writes a temporary file next to the
///   target, `fsync`s it, renames it over the target and `fsync`s the
///   directory: a reader (or a restart after a crash or power loss) sees
///   the old object or the new one, never a part.
/// - [`open_writer`](StorageBackend::open_writer) creates the file (it must
///   not exist) and `fsync`s its directory. Each
///   [`append`](ObjectWriter::append) is one vectored `write` of the whole
///   buffer list, without buffering in the process: once it returns the
///   bytes are in the kernel's page cache and survive the process being
///   killed (`kill -9`, a panic, an abort). [`sync`](ObjectWriter::sync)
///   `fsync`s, which makes them survive a power loss too; the recorder does
///   that when it closes a file. After a power loss, what was appended
///   since the last `sync` may be missing.
///
/// Errors keep the operating system's kind: `StorageFull` (ENOSPC),
/// `PermissionDenied` (EACCES), `ReadOnlyFilesystem` (EROFS), ...
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use arcly_core::traits::StorageBackend;
/// use arcly_record::FsStorage;
/// let root = std::env::temp_dir().join(format!("arcly-fs-doc-{}", std::process::id()));
/// let storage = FsStorage::new(&root).unwrap();
/// storage.put("live/cam/a.m3u8", bytes::Bytes::from_static(b"#EXTM3U\n")).await.unwrap();
/// let mut w = storage.open_writer("live/cam/a_0001.ts").await.unwrap();
/// w.append(&[bytes::Bytes::from_static(b"\x47")]).await.unwrap();
/// assert_eq!(storage.list("live/cam/").await.unwrap(), ["live/cam/a.m3u8", "live/cam/a_0001.ts"]);
/// assert!(storage.put("../escape", bytes::Bytes::new()).await.is_err());
/// # std::fs::remove_dir_all(&root).unwrap();
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct FsStorage {
    root: PathBuf,
}

impl FsStorage {
    /// Storage under `root`, created (with its parents) if missing.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of a checked relative path.
    fn resolve(&self, path: &str) -> Result<PathBuf> {
        check(path, false)?;
        Ok(self.root.join(path))
    }
}

/// Refuses paths that could leave the root or do not name a file;
/// `prefix` allows an empty path and a trailing `/` (list prefixes).
fn check(path: &str, prefix: bool) -> Result<()> {
    let bad = |why: &str| Err(StreamError::Config(format!("storage path {path:?} {why}")));
    if path.is_empty() && !prefix {
        return bad("is empty");
    }
    if path.starts_with('/') || path.contains('\\') || path.contains('\0') {
        return bad("is not a relative /-separated path");
    }
    let body = if prefix { path.strip_suffix('/').unwrap_or(path) } else { path };
    if !body.is_empty() && body.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return bad("has an empty, `.` or `..` segment");
    }
    Ok(())
}

/// Runs blocking file I/O off the runtime's workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(StreamError::Io),
        Err(e) => Err(StreamError::Io(io::Error::other(format!("storage task failed: {e}")))),
    }
}

/// `fsync`s a directory, so that entries created or renamed in it are
/// durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn create_parent(file: &Path) -> io::Result<&Path> {
    let parent = file.parent().ok_or_else(|| io::Error::other("path without a parent"))?;
    fs::create_dir_all(parent)?;
    Ok(parent)
}

/// Writes every part, in order, with as few `writev` calls as the kernel
/// allows.
fn write_parts(file: &mut File, parts: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts.iter().filter(|p| !p.is_empty()).map(|p| IoSlice::new(p)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Every file under `dir`, as paths relative to `root` with `/`.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") {
                // A put in progress (or cut short by a crash).
                continue;
            }
            let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            out.push(parts.join("/"));
        }
    }
    Ok(())
}

#[async_trait]
impl StorageBackend for FsStorage {
    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        let target = self.resolve(path)?;
        blocking(move || {
            let parent = create_parent(&target)?;
            let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let temp = parent.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
            let written = (|| {
                let mut f = OpenOptions::new().write(true).create_new(true).open(&temp)?;
                f.write_all(&data)?;
                f.sync_all()?;
                fs::rename(&temp, &target)
            })();
            if written.is_err() {
                let _ = fs::remove_file(&temp);
            }
            written?;
            sync_dir(parent)
        })
        .await
    }

    async fn get(&self, path: &str) -> Result<Option<Bytes>> {
        let file = self.resolve(path)?;
        blocking(move || match fs::read(&file) {
            Ok(data) => Ok(Some(Bytes::from(data))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let file = self.resolve(path)?;
        blocking(move || match fs::remove_file(&file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        check(prefix, true)?;
        let root = self.root.clone();
        // Walk only the deepest directory the prefix names.
        let dir = match prefix.rfind('/') {
            Some(i) => root.join(&prefix[..i]),
            None => root.clone(),
        };
        let prefix = prefix.to_owned();
        blocking(move || {
            let mut all = Vec::new();
            walk(&root, &dir, &mut all)?;
            all.retain(|p| p.starts_with(&prefix));
            all.sort();
            Ok(all)
        })
        .await
    }

    async fn open_writer(&self, path: &str) -> Result<Box<dyn ObjectWriter>> {
        let target = self.resolve(path)?;
        let file = blocking(move || {
            let parent = create_parent(&target)?;
            let file = OpenOptions::new().append(true).create_new(true).open(&target)?;
            sync_dir(parent)?;
            Ok(file)
        })
        .await?;
        Ok(Box::new(FsWriter { file: Some(file), len: 0 }))
    }
}

/// A file of an [`FsStorage`] being appended to.
#[derive(Debug)]
struct FsWriter {
    /// Lent to the blocking thread during a call.
    file: Option<File>,
    len: u64,
}

impl FsWriter {
    async fn with_file(&mut self, f: impl FnOnce(&mut File) -> io::Result<()> + Send + 'static) -> Result<()> {
        let Some(mut file) = self.file.take() else {
            return Err(StreamError::Io(io::Error::other("file lost by an earlier failed call")));
        };
        let (file, result) = blocking(move || {
            let r = f(&mut file);
            Ok((file, r))
        })
        .await?;
        self.file = Some(file);
        result.map_err(StreamError::Io)
    }
}

#[async_trait]
impl ObjectWriter for FsWriter {
    async fn append(&mut self, parts: &[Bytes]) -> Result<()> {
        let parts = parts.to_vec();
        let n: u64 = parts.iter().map(|p| p.len() as u64).sum();
        self.with_file(move |file| write_parts(file, &parts)).await?;
        self.len += n;
        Ok(())
    }

    async fn sync(&mut self) -> Result<()> {
        self.with_file(|file| file.sync_data()).await
    }

    fn len(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("arcly-record-fs-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn paths_are_checked() {
        for bad in ["", "/abs", "a//b", "a/../b", "..", "./a", "a/.", "a\\b", "a\0b"] {
            assert!(check(bad, false).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "a/b.mp4", "live/cam-1/2026-11-25T01-23-45Z_0001.mp4", ".hidden"] {
            assert!(check(good, false).is_ok(), "{good:?} refused");
        }
        assert!(check("", true).is_ok() && check("a/", true).is_ok() && check("a/b", true).is_ok());
        assert!(check("../", true).is_err());
    }

    #[tokio::test]
    async fn put_get_list_delete() {
        let root = scratch("basic");
        let s = FsStorage::new(&root).unwrap();
        s.put("x/a.m3u8", Bytes::from_static(b"one")).await.unwrap();
        s.put("x/a.m3u8", Bytes::from_static(b"two")).await.unwrap();
        s.put("x/y/b", Bytes::from_static(b"b")).await.unwrap();
        s.put("z", Bytes::from_static(b"z")).await.unwrap();
        assert_eq!(s.get("x/a.m3u8").await.unwrap().unwrap(), &b"two"[..]);
        assert_eq!(s.get("x/none").await.unwrap(), None);
        assert_eq!(s.list("").await.unwrap(), ["x/a.m3u8", "x/y/b", "z"]);
        assert_eq!(s.list("x/").await.unwrap(), ["x/a.m3u8", "x/y/b"]);
        assert_eq!(s.list("x/a").await.unwrap(), ["x/a.m3u8"]);
        assert!(s.list("nothing/here").await.unwrap().is_empty());
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(root.join("x")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        s.delete("z").await.unwrap();
        s.delete("z").await.unwrap();
        assert_eq!(s.get("z").await.unwrap(), None);
        fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn appends_are_visible_at_once_and_files_are_new() {
        let root = scratch("append");
        let s = FsStorage::new(&root).unwrap();
        let mut w = s.open_writer("r/a.ts").await.unwrap();
        // Many parts in one call: more than one writev may be needed.
        let parts: Vec<Bytes> = (0..3000u32).map(|i| Bytes::from(vec![(i % 251) as u8; 7])).collect();
        w.append(&parts).await.unwrap();
        assert_eq!(w.len(), 21_000);
        // Readable before any sync or close: what survives a kill.
        let on_disk = fs::read(root.join("r/a.ts")).unwrap();
        assert_eq!(on_disk.len(), 21_000);
        assert_eq!(on_disk[7 * 2999], (2999 % 251) as u8);
        w.append(&[Bytes::from_static(b"end")]).await.unwrap();
        w.sync().await.unwrap();
        assert!(fs::read(root.join("r/a.ts")).unwrap().ends_with(b"end"));
        let e = s.open_writer("r/a.ts").await.err().unwrap();
        assert!(matches!(&e, StreamError::Io(io) if io.kind() == io::ErrorKind::AlreadyExists), "{e}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn errors_keep_their_kind() {
        let root = scratch("errors");
        let s = FsStorage::new(&root).unwrap();
        // A file where a directory is needed: refused even for root.
        fs::write(root.join("live"), b"not a directory").unwrap();
        let e = s.open_writer("live/a/b.mp4").await.err().unwrap();
        assert!(matches!(e, StreamError::Io(_)), "{e}");
        let e = s.put("live/x.m3u8", Bytes::new()).await.unwrap_err();
        assert!(matches!(e, StreamError::Io(_)), "{e}");
        fs::remove_dir_all(&root).unwrap();
    }
}
