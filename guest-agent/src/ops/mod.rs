//! The agent's operations, one function per entry of
//! `iobench_proto::ops::OPS`, grouped by interface: [`vfio`] (container,
//! group, device, sPAPR windows, EEH), [`iommufd`] (IOAS, HWPT, mock
//! domain, dirty tracking, invalidation, event queues, vIOMMU),
//! [`edu`] (device DMA), [`bench`] (timed loops), [`selftest`] (upstream
//! selftest programs), [`pci`] (configuration space through sysfs),
//! [`host`] (host steps), and here the generic ones
//! (memory, checks, files, the kernel log, debugging aids).

pub mod bench;
pub mod edu;
pub mod host;
pub mod iommufd;
pub mod pci;
pub mod selftest;
pub mod vfio;

use std::fs::File;
use std::os::fd::BorrowedFd;

use iobench_proto::ops::{parse_u64, value_matches};
use serde_json::{Value, json};

use crate::args::Args;
use crate::ctx::{Ctx, Object};
use crate::mem::Buffer;
use crate::outcome::{OpError, OpResult};

type OpFn = fn(&mut Ctx, &Args) -> OpResult;

/// Every operation's implementation, by catalogue name.
pub const TABLE: &[(&str, OpFn)] = &[
    ("bench.edu_round_trips", bench::edu_round_trips),
    ("bench.ioas_map_unmap", bench::ioas_map_unmap),
    ("bench.vfio_map_unmap", bench::vfio_map_unmap),
    ("check", check),
    ("close", |ctx, args| ctx.close(args)),
    ("debug.abort", |_, _| std::process::abort()),
    ("debug.sleep", |_, args| {
        std::thread::sleep(std::time::Duration::from_millis(args.u64("ms")?));
        Ok(Value::Null)
    }),
    ("edu.dma", edu::dma),
    ("eeh.pe_op", vfio::eeh_pe_op),
    ("fault.alloc", iommufd::eventq::fault_alloc),
    ("fault.read", iommufd::eventq::fault_read),
    ("fault.respond", iommufd::eventq::fault_respond),
    ("file.read", file_read),
    ("file.wait", file_wait),
    ("file.write", file_write),
    ("host.qmp", host::qmp),
    ("hw_queue.alloc", iommufd::viommu::hw_queue_alloc),
    ("hwpt.alloc", iommufd::hwpt_alloc),
    ("hwpt.get_dirty_bitmap", iommufd::dirty::get_bitmap),
    ("hwpt.invalidate", iommufd::invalidate::invalidate),
    ("hwpt.set_dirty_tracking", iommufd::dirty::set_tracking),
    ("ioas.alloc", iommufd::ioas_alloc),
    ("ioas.allow_iovas", iommufd::allow_iovas),
    ("ioas.change_process", iommufd::change_process),
    ("ioas.copy", iommufd::copy),
    ("ioas.iova_ranges", iommufd::iova_ranges),
    ("ioas.map", iommufd::map),
    ("ioas.map_file", iommufd::map_file),
    ("ioas.unmap", iommufd::unmap),
    ("iommufd.destroy", iommufd::destroy),
    ("iommufd.hw_info", iommufd::hw_info),
    ("iommufd.open", iommufd::open),
    ("iommufd.option", iommufd::option),
    ("iommufd.vfio_ioas", iommufd::vfio_ioas),
    ("kernel.log_contains", log_contains),
    ("kernel.meminfo", meminfo),
    ("mem.alloc", mem_alloc),
    ("mem.check", mem_check),
    ("mem.fill", mem_fill),
    ("mock.access_create", iommufd::access_create),
    ("mock.access_pages", iommufd::access_pages),
    ("mock.access_rw", iommufd::access_rw),
    ("mock.add_reserved", iommufd::add_reserved),
    ("mock.check_dev_cache", iommufd::invalidate::check_dev_cache),
    ("mock.check_iotlb", iommufd::invalidate::check_iotlb),
    ("mock.check_map", iommufd::check_map),
    ("mock.dirty", iommufd::dirty::mock_dirty),
    ("mock.domain", iommufd::mock_domain),
    ("mock.domain_replace", iommufd::mock_domain_replace),
    ("mock.trigger_iopf", iommufd::eventq::trigger_iopf),
    ("mock.trigger_vevent", iommufd::eventq::trigger_vevent),
    ("pci.bind_vfio", vfio::bind),
    ("pci.config_read", pci::config_read),
    ("pci.config_write", pci::config_write),
    ("selftest.run", selftest::run),
    ("spapr.create_window", vfio::create_window),
    ("spapr.register_memory", vfio::register_memory),
    ("spapr.remove_window", vfio::remove_window),
    ("spapr.tce_info", vfio::tce_info),
    ("spapr.unregister_memory", vfio::unregister_memory),
    ("vdevice.alloc", iommufd::viommu::vdevice_alloc),
    ("veventq.alloc", iommufd::eventq::veventq_alloc),
    ("veventq.read", iommufd::eventq::veventq_read),
    ("vfio.cdev_attach", vfio::cdev_attach),
    ("vfio.cdev_bind", vfio::cdev_bind),
    ("vfio.cdev_detach", vfio::cdev_detach),
    ("vfio.cdev_open", vfio::cdev_open),
    ("vfio.check_extension", vfio::check_extension),
    ("vfio.container_open", vfio::container_open),
    ("vfio.device_info", vfio::device_info),
    ("vfio.device_open", vfio::device_open),
    ("vfio.device_reset", vfio::device_reset),
    ("vfio.group_open", vfio::group_open),
    ("vfio.group_set_container", vfio::group_set_container),
    ("vfio.group_status", vfio::group_status),
    ("vfio.group_unset_container", vfio::group_unset_container),
    ("vfio.irq_count", vfio::irq_count),
    ("vfio.irq_disable", vfio::irq_disable),
    ("vfio.irq_eventfd", vfio::irq_eventfd),
    ("vfio.map_dma", vfio::map_dma),
    ("vfio.region_mmap_read", vfio::region_mmap_read),
    ("vfio.region_read", vfio::region_read),
    ("vfio.region_write", vfio::region_write),
    ("vfio.set_iommu", vfio::set_iommu),
    ("vfio.unmap_dma", vfio::unmap_dma),
    ("viommu.alloc", iommufd::viommu::viommu_alloc),
];

/// Runs one operation.
pub fn dispatch(ctx: &mut Ctx, op: &str, args: &Args) -> OpResult {
    match TABLE.iter().find(|(name, _)| *name == op) {
        Some((_, f)) => f(ctx, args),
        None => Err(OpError::Error(format!(
            "this agent has no operation {op:?} (agent {} is older or newer than the host)",
            env!("CARGO_PKG_VERSION")
        ))),
    }
}

fn mem_alloc(ctx: &mut Ctx, args: &Args) -> OpResult {
    let size = args.u64("size")?;
    let hugetlb = args.bool_or("hugetlb", false)?;
    let buf = if args.bool_or("memfd", false)? {
        Buffer::memfd(size as usize, hugetlb)?
    } else {
        Buffer::new(size as usize, hugetlb)?
    };
    if args.opt("fill").is_some() {
        buf.fill(args.pattern("fill")?, 0, size);
    }
    let addr = buf.addr(0);
    Ok(ctx.add(Object::Buffer(buf), json!({ "size": size, "addr": addr })))
}

/// Runs `f` on a duplicate of `fd` as a `File` (the same open file); an
/// I/O error becomes its errno.
pub fn with_file<T>(
    fd: BorrowedFd<'_>,
    f: impl FnOnce(&File) -> std::io::Result<T>,
) -> Result<T, OpError> {
    let file = File::from(fd.try_clone_to_owned().map_err(|e| format!("dup: {e}"))?);
    f(&file).map_err(|e| match e.raw_os_error() {
        Some(code) => OpError::Errno(code),
        None => OpError::Error(e.to_string()),
    })
}

fn mem_fill(ctx: &mut Ctx, args: &Args) -> OpResult {
    let (buf, offset, length) = ctx.buffer_range(args)?;
    buf.fill(args.pattern("pattern")?, offset, length);
    Ok(Value::Null)
}

fn mem_check(ctx: &mut Ctx, args: &Args) -> OpResult {
    let (buf, offset, length) = ctx.buffer_range(args)?;
    buf.check(args.pattern("pattern")?, offset, length)
        .map(|_| Value::Null)
        .map_err(OpError::Error)
}

fn file_read(_ctx: &mut Ctx, args: &Args) -> OpResult {
    let path = args.str("path")?;
    match std::fs::read(path) {
        Ok(b) => Ok(Value::String(
            String::from_utf8_lossy(&b).trim().to_string(),
        )),
        Err(e) => Err(e
            .raw_os_error()
            .map(OpError::Errno)
            .unwrap_or_else(|| OpError::Error(format!("{path}: {e}")))),
    }
}

/// `file.wait`: polls every 20 ms, for what the kernel adds or removes in
/// the background (PCI functions during EEH recovery).
fn file_wait(_ctx: &mut Ctx, args: &Args) -> OpResult {
    let path = std::path::Path::new(args.str("path")?);
    let exists = args.bool_or("exists", true)?;
    let timeout = std::time::Duration::from_millis(args.u64_or("timeout_ms", 10_000)?);
    let start = std::time::Instant::now();
    while path.exists() != exists {
        if start.elapsed() >= timeout {
            return Err(OpError::Errno(libc::ETIMEDOUT));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(Value::Null)
}

fn file_write(ctx: &mut Ctx, args: &Args) -> OpResult {
    let (path, data) = (args.str("path")?, args.str("data")?);
    if let Some(g) = &ctx.guard {
        g.write(path, data)?;
    }
    match std::fs::write(path, data) {
        Ok(()) => Ok(Value::Null),
        Err(e) => Err(e
            .raw_os_error()
            .map(OpError::Errno)
            .unwrap_or_else(|| OpError::Error(format!("{path}: {e}")))),
    }
}

/// `kernel.meminfo`: every `/proc/meminfo` field, `kB` values in bytes.
fn meminfo(_ctx: &mut Ctx, _args: &Args) -> OpResult {
    let text = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| OpError::Error(format!("/proc/meminfo: {e}")))?;
    Ok(Value::Object(parse_meminfo(&text)))
}

/// `Name:   123 kB` lines as `{"Name": 125952}` (unitless counts as they are).
fn parse_meminfo(text: &str) -> serde_json::Map<String, Value> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let mut words = rest.split_whitespace();
            let n: u64 = words.next()?.parse().ok()?;
            let n = if words.next() == Some("kB") {
                n * 1024
            } else {
                n
            };
            Some((name.trim().to_string(), Value::from(n)))
        })
        .collect()
}

/// `kernel.log_contains`: polls the log every 20 ms until `timeout_ms`
/// (by default looks once), for what the kernel does in the background
/// (EEH recovery runs in its own thread).
fn log_contains(ctx: &mut Ctx, args: &Args) -> OpResult {
    let text = args.str("text")?;
    let timeout = std::time::Duration::from_millis(args.u64_or("timeout_ms", 0)?);
    let start = std::time::Instant::now();
    loop {
        ctx.refresh_log();
        if let Some(line) = ctx.log.iter().find(|l| l.contains(text)) {
            return Ok(Value::String(line.clone()));
        }
        if start.elapsed() >= timeout {
            return Err(OpError::Error(format!(
                "no kernel log line since the scenario began contains {text:?} ({} lines seen{})",
                ctx.log.len(),
                if timeout.is_zero() {
                    String::new()
                } else {
                    format!(" in {timeout:?}")
                }
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `check`: compares `value` with each comparison given; all must hold.
fn check(_ctx: &mut Ctx, args: &Args) -> OpResult {
    let value = args.get("value")?;
    let num = || parse_u64(value).map_err(|e| OpError::Error(format!("value: {e}")));
    let mut failed = Vec::new();
    if let Some(want) = args.opt("eq") {
        if !value_matches(want, value) {
            failed.push(format!("{value} != {want}"));
        }
    }
    if let Some(want) = args.opt("ne") {
        if value_matches(want, value) {
            failed.push(format!("{value} == {want}"));
        }
    }
    if let Some(Value::String(needle)) = args.opt("contains") {
        if !value.as_str().is_some_and(|v| v.contains(needle.as_str())) {
            failed.push(format!("{value} does not contain {needle:?}"));
        }
    }
    type Cmp = fn(u64, u64) -> bool;
    let comparisons: [(&str, &str, Cmp); 6] = [
        ("lt", "<", |a, b| a < b),
        ("le", "<=", |a, b| a <= b),
        ("gt", ">", |a, b| a > b),
        ("ge", ">=", |a, b| a >= b),
        ("bits_set", "has all bits of", |a, b| a & b == b),
        ("bits_clear", "has none of the bits of", |a, b| a & b == 0),
    ];
    for (key, word, f) in comparisons {
        if let Some(b) = args.opt_u64(key)? {
            let a = num()?;
            if !f(a, b) {
                failed.push(format!("{a:#x} {word} {b:#x} is false"));
            }
        }
    }
    if failed.is_empty() {
        Ok(value.clone())
    } else {
        Err(OpError::Error(failed.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn meminfo_sizes_are_bytes() {
        let m = super::parse_meminfo(
            "MemTotal:        1004928 kB\nVmallocUsed:       12288 kB\nHugePages_Total:       0\n",
        );
        assert_eq!(m["VmallocUsed"], 12288 * 1024);
        assert_eq!(m["HugePages_Total"], 0);
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn every_catalogue_op_has_an_implementation_and_back() {
        let table: Vec<&str> = super::TABLE.iter().map(|(n, _)| *n).collect();
        let catalogue: Vec<&str> = iobench_proto::ops::OPS.iter().map(|o| o.name).collect();
        assert_eq!(table, catalogue);
    }
}
