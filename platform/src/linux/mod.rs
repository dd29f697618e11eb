//! The real Linux host: `/proc`, the system clock and the system time zone;
//! [`network`], the kernel's network without D-Bus.
//!
//! Parsing is kept in pure functions over the files' text so that it is
//! tested on fixtures; [`LinuxHost`] only reads the files.

pub mod nat;
pub mod network;
pub mod nslookup;
pub mod ping;
pub mod rtnl;
pub mod traceroute;
pub mod zone;

use std::sync::Mutex;

use dm_core::lock;
use std::time::{Duration, SystemTime};

use crate::{Host, Memory, PlatformError};

/// Reads host facts from `/proc` and `/sys` (or other roots, for tests).
pub struct LinuxHost {
    proc_root: String,
    /// The temperature sensors' files (`.../temp`, `.../tempN_input`, in
    /// millidegrees), with their names, found at start: thermal zones and
    /// hwmon chips do not come and go.
    sensors: Vec<(String, std::path::PathBuf)>,
    /// `/sys/class/power_supply`.
    power_supply: std::path::PathBuf,
    /// The size of a memory page, KiB (RSS is counted in pages).
    page_kib: u64,
    /// Each reader's previous sample.
    last_cpu: Mutex<std::collections::HashMap<String, CpuTimes>>,
}

impl Default for LinuxHost {
    fn default() -> LinuxHost {
        LinuxHost::new("/proc")
    }
}

impl LinuxHost {
    pub fn new(proc_root: &str) -> LinuxHost {
        LinuxHost::with_sys(proc_root, "/sys")
    }

    pub fn with_sys(proc_root: &str, sys_root: &str) -> LinuxHost {
        LinuxHost {
            proc_root: proc_root.trim_end_matches('/').to_owned(),
            sensors: temperature_sensors(std::path::Path::new(sys_root)),
            power_supply: std::path::Path::new(sys_root).join("class/power_supply"),
            page_kib: page_kib(),
            last_cpu: Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn read(&self, name: &str) -> Result<String, PlatformError> {
        let path = format!("{}/{name}", self.proc_root);
        std::fs::read_to_string(&path).map_err(|e| PlatformError::Failed(format!("{path}: {e}")))
    }
}

impl Host for LinuxHost {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn uptime(&self) -> Result<Duration, PlatformError> {
        parse_uptime(&self.read("uptime")?)
    }

    fn memory(&self) -> Result<Memory, PlatformError> {
        parse_meminfo(&self.read("meminfo")?)
    }

    fn cpu_usage(&self, reader: &str) -> Result<u8, PlatformError> {
        let now = parse_cpu_times(&self.read("stat")?)?;
        let mut last = lock(&self.last_cpu);
        let usage = now.usage_since(last.get(reader));
        // Readers are the few management origins; bounded all the same.
        if last.len() >= MAX_READERS && !last.contains_key(reader) {
            last.clear();
        }
        last.insert(reader.to_owned(), now);
        Ok(usage)
    }

    fn timezone(&self) -> Option<String> {
        zone::system_zone_name()
    }

    fn utc_offset(&self) -> i32 {
        let tz = jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC);
        tz.to_offset(jiff::Timestamp::now()).seconds()
    }

    fn processes(&self) -> Result<Vec<crate::Process>, PlatformError> {
        let entries = std::fs::read_dir(&self.proc_root)
            .map_err(|e| PlatformError::Failed(format!("{}: {e}", self.proc_root)))?;
        let mut pids: Vec<u32> = entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        let ticks = ticks_per_second();
        // A process may end between the listing and its files: left out.
        Ok(pids
            .into_iter()
            .filter_map(|pid| {
                let stat = self.read(&format!("{pid}/stat")).ok()?;
                let cmdline =
                    std::fs::read(format!("{}/{pid}/cmdline", self.proc_root)).unwrap_or_default();
                parse_process(pid, &stat, &cmdline, self.page_kib, ticks)
            })
            .collect())
    }

    fn power_sources(&self) -> Vec<crate::PowerSource> {
        let Ok(entries) = std::fs::read_dir(&self.power_supply) else {
            return Vec::new();
        };
        let mut supplies: Vec<std::path::PathBuf> = entries.flatten().map(|e| e.path()).collect();
        supplies.sort();
        supplies
            .into_iter()
            .filter_map(|dir| {
                let text = |f: &str| {
                    std::fs::read_to_string(dir.join(f))
                        .ok()
                        .map(|t| t.trim().to_owned())
                        .filter(|t| !t.is_empty())
                };
                let micro = |f: &str| text(f)?.parse::<i64>().ok().map(|v| v / 1000);
                Some(crate::PowerSource {
                    kind: text("type")?,
                    voltage_mv: micro("voltage_now"),
                    current_ma: micro("current_now"),
                    capacity: text("capacity")
                        .and_then(|c| c.parse::<u8>().ok())
                        .filter(|c| *c <= 100),
                    status: text("status"),
                    capacity_level: text("capacity_level"),
                })
            })
            .collect()
    }

    fn temperature_sensors(&self) -> Vec<String> {
        self.sensors.iter().map(|(name, _)| name.clone()).collect()
    }

    fn temperature(&self, n: usize) -> Result<f64, PlatformError> {
        let (name, file) = self
            .sensors
            .get(n)
            .ok_or_else(|| PlatformError::Unavailable(format!("temperature sensor {n}")))?;
        let text = std::fs::read_to_string(file)
            .map_err(|e| PlatformError::Unavailable(format!("{name}: {e}")))?;
        let millidegrees: i64 = text
            .trim()
            .parse()
            .map_err(|_| PlatformError::Failed(format!("{}: {text:?}", file.display())))?;
        Ok(millidegrees as f64 / 1000.0)
    }

    fn processors(&self) -> Vec<String> {
        let count = self
            .read("cpuinfo")
            .map(|text| count_processors(&text))
            .unwrap_or(0);
        architecture(std::env::consts::ARCH)
            .map(|arch| vec![arch.to_owned(); count])
            .unwrap_or_default()
    }
}

/// The temperature sensors under `sys`: each thermal zone (named by its
/// `type`), then each hwmon chip's `tempN_input` (named `chip label`, or
/// `chip tempN` without a label), in name order within each; a name met
/// twice gets its zone or chip appended.
pub fn temperature_sensors(sys: &std::path::Path) -> Vec<(String, std::path::PathBuf)> {
    let sorted = |dir: std::path::PathBuf| -> Vec<std::path::PathBuf> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort_by_key(|p| natural(p));
        entries
    };
    let text = |path: std::path::PathBuf| {
        std::fs::read_to_string(path)
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    };
    let mut found: Vec<(String, String, std::path::PathBuf)> = Vec::new();
    for zone in sorted(sys.join("class/thermal")) {
        let Some(dir) = zone.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if !dir.starts_with("thermal_zone") || !zone.join("temp").exists() {
            continue;
        }
        let name = text(zone.join("type")).unwrap_or_else(|| dir.clone());
        found.push((name, dir, zone.join("temp")));
    }
    for chip in sorted(sys.join("class/hwmon")) {
        let Some(dir) = chip.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let chip_name = text(chip.join("name")).unwrap_or_else(|| dir.clone());
        for input in sorted(chip.clone()) {
            let Some(file) = input.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(sensor) = file
                .strip_suffix("_input")
                .filter(|s| s.starts_with("temp"))
            else {
                continue;
            };
            let label = text(chip.join(format!("{sensor}_label"))).unwrap_or_else(|| sensor.into());
            found.push((format!("{chip_name} {label}"), dir.clone(), input.clone()));
        }
    }
    let names: Vec<String> = found.iter().map(|(n, _, _)| n.clone()).collect();
    found
        .into_iter()
        .map(|(name, dir, file)| {
            if names.iter().filter(|n| **n == name).count() > 1 {
                (format!("{name} ({dir})"), file)
            } else {
                (name, file)
            }
        })
        .collect()
}

/// A path's name with its first run of digits compared as a number
/// (`thermal_zone10` after `thermal_zone9`, `temp10_input` after
/// `temp2_input`).
fn natural(path: &std::path::Path) -> (String, u64, String) {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let start = name
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(name.len());
    let end = name[start..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(name.len(), |e| start + e);
    (
        name[..start].to_owned(),
        name[start..end].parse().unwrap_or(0),
        name[end..].to_owned(),
    )
}

/// The clock ticks per second of `/proc/PID/stat` (USER_HZ, 100 on
/// every common architecture).
fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|ticks| u64::try_from(ticks).ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// One process from its `stat` line (proc(5): the command in parentheses,
/// then the fields from state on) and its NUL-separated `cmdline` (empty
/// for a kernel thread, whose name in brackets is shown instead).
pub fn parse_process(
    pid: u32,
    stat: &str,
    cmdline: &[u8],
    page_kib: u64,
    ticks_per_second: u64,
) -> Option<crate::Process> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    // Fields from the third (state) on: state=0, utime=11, stime=12,
    // priority=15, rss=21.
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<i64>().ok());
    let count = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let state = match *fields.first()? {
        "R" => "Running",
        "S" => "Sleeping",
        "T" | "t" => "Stopped",
        "D" => "Uninterruptible",
        "Z" | "X" | "x" => "Zombie",
        // I: an idle kernel thread; anything newer, idle too.
        _ => "Idle",
    };
    let ticks = count(11)?.saturating_add(count(12)?);
    let command = if cmdline.is_empty() {
        format!("[{name}]")
    } else {
        String::from_utf8_lossy(cmdline.strip_suffix(&[0]).unwrap_or(cmdline)).replace('\0', " ")
    };
    Some(crate::Process {
        pid,
        command,
        size_kib: count(21)?.saturating_mul(page_kib),
        priority: u32::try_from(number(15)?.clamp(0, 99)).unwrap_or(0),
        cpu_time_ms: ticks.saturating_mul(1000) / ticks_per_second.max(1),
        state,
    })
}

/// How many processors `/proc/cpuinfo` lists.
pub fn count_processors(cpuinfo: &str) -> usize {
    cpuinfo
        .lines()
        .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
        .count()
}

/// TR-181's name (`DeviceInfo.Processor.{i}.Architecture`) for a Rust
/// target architecture; `None` for one TR-181 does not list.
pub fn architecture(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "x86_64" => "x86_64",
        "x86" => "i386",
        "arm" | "aarch64" => "arm",
        "powerpc" | "powerpc64" => "powerpc",
        "mips" | "mips64" if cfg!(target_endian = "big") => "mipseb",
        "mips" | "mips64" => "mipsel",
        "m68k" => "m68k",
        _ => return None,
    })
}

/// The page size in KiB, as the kernel gives it to every process.
fn page_kib() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|bytes| u64::try_from(bytes).ok())
        .map_or(4, |bytes| (bytes / 1024).max(1))
}

/// `/proc/uptime`: "seconds-up seconds-idle".
pub fn parse_uptime(text: &str) -> Result<Duration, PlatformError> {
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse::<f64>().ok())
        // A number no Duration holds (4e68, found by fuzzing) is as
        // unreadable as a word: from_secs_f64 would panic on it.
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| PlatformError::Failed(format!("unreadable /proc/uptime: {text:?}")))
}

/// `/proc/meminfo`: MemTotal and MemAvailable (what can be used without
/// swapping, which is what "free memory" means to a device manager;
/// MemFree on kernels before 3.14).
pub fn parse_meminfo(text: &str) -> Result<Memory, PlatformError> {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    let total_kib = field("MemTotal")
        .ok_or_else(|| PlatformError::Failed("/proc/meminfo has no MemTotal".into()))?;
    let free_kib = field("MemAvailable")
        .or_else(|| field("MemFree"))
        .ok_or_else(|| PlatformError::Failed("/proc/meminfo has no MemAvailable".into()))?;
    Ok(Memory {
        total_kib,
        free_kib,
    })
}

/// Aggregate CPU jiffies from the `cpu` line of `/proc/stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTimes {
    pub busy: u64,
    pub total: u64,
}

impl CpuTimes {
    /// Busy percentage between `previous` and `self` (since boot without
    /// a previous sample).
    pub fn usage_since(&self, previous: Option<&CpuTimes>) -> u8 {
        let (busy, total) = match previous {
            Some(p) => (
                self.busy.saturating_sub(p.busy),
                self.total.saturating_sub(p.total),
            ),
            None => (self.busy, self.total),
        };
        if total == 0 {
            return 0;
        }
        (busy.saturating_mul(100) / total).min(100) as u8
    }
}

/// `/proc/stat` `cpu` line: user nice system idle iowait irq softirq steal
/// ...; idle and iowait count as not busy.
pub fn parse_cpu_times(text: &str) -> Result<CpuTimes, PlatformError> {
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| PlatformError::Failed("/proc/stat has no cpu line".into()))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    if values.len() < 4 {
        return Err(PlatformError::Failed(format!(
            "short /proc/stat cpu line: {line:?}"
        )));
    }
    // Saturating: counters near u64::MAX (a corrupt or hostile file, found
    // by fuzzing) must not overflow.
    let total = values.iter().fold(0u64, |sum, v| sum.saturating_add(*v));
    let idle = values[3].saturating_add(values.get(4).copied().unwrap_or(0));
    Ok(CpuTimes {
        busy: total.saturating_sub(idle),
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_sensors_are_thermal_zones_then_hwmon_inputs() {
        let sys = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = sys.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("class/thermal/thermal_zone10/type", "soc\n");
        write("class/thermal/thermal_zone10/temp", "40000\n");
        write("class/thermal/thermal_zone2/type", "cpu-thermal\n");
        write("class/thermal/thermal_zone2/temp", "51250\n");
        // A cooling device, not a sensor.
        write("class/thermal/cooling_device0/type", "fan\n");
        write("class/hwmon/hwmon0/name", "nvme\n");
        write("class/hwmon/hwmon0/temp10_input", "30000\n");
        write("class/hwmon/hwmon0/temp2_input", "-5000\n");
        write("class/hwmon/hwmon0/temp2_label", "Sensor 2\n");
        write("class/hwmon/hwmon1/name", "nvme\n");
        write("class/hwmon/hwmon1/temp10_input", "oops\n");
        let host = LinuxHost::with_sys("/proc", sys.path().to_str().unwrap());
        assert_eq!(
            host.temperature_sensors(),
            [
                "cpu-thermal",
                "soc",
                "nvme Sensor 2",
                "nvme temp10 (hwmon0)",
                "nvme temp10 (hwmon1)"
            ]
        );
        assert_eq!(host.temperature(0), Ok(51.25));
        assert_eq!(host.temperature(2), Ok(-5.0));
        assert!(matches!(host.temperature(4), Err(PlatformError::Failed(_))));
        assert!(matches!(
            host.temperature(5),
            Err(PlatformError::Unavailable(_))
        ));
    }

    /// proc(5)'s stat line: the name in parentheses may hold spaces and
    /// parentheses itself; the fields are counted after the last ')'.
    #[test]
    fn processes_from_stat_and_cmdline() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 500 0 0 0 \
                    250 130 0 0 20 0 3 0 900 123456789 2048 18446744073709551615";
        let p = parse_process(4242, stat, b"/usr/bin/app\0--flag\0value\0", 4, 100).unwrap();
        assert_eq!(p.pid, 4242);
        assert_eq!(p.command, "/usr/bin/app --flag value");
        assert_eq!(p.state, "Sleeping");
        // utime 250 + stime 130 ticks at 100 Hz.
        assert_eq!(p.cpu_time_ms, 3800);
        assert_eq!(p.priority, 20);
        // 2048 pages of 4 KiB.
        assert_eq!(p.size_kib, 8192);
        // A kernel thread: no command line, its name in brackets; a
        // real-time priority (negative) is the highest, 0.
        let kthread = "2 (kthreadd) I 0 0 0 0 -1 2129984 0 0 0 0 0 5 0 0 -51 0 1 0 2 0 0";
        let k = parse_process(2, kthread, b"", 4, 100).unwrap();
        assert_eq!(k.command, "[kthreadd]");
        assert_eq!(k.state, "Idle");
        assert_eq!(k.priority, 0);
        for (letter, state) in [
            ("R", "Running"),
            ("D", "Uninterruptible"),
            ("Z", "Zombie"),
            ("T", "Stopped"),
        ] {
            let line = stat.replace(") S ", &format!(") {letter} "));
            assert_eq!(parse_process(1, &line, b"x", 4, 100).unwrap().state, state);
        }
        // Numbers past any counter: saturated, no panic.
        let huge = stat.replace(" 250 130 ", " 18446744073709551615 18446744073709551615 ");
        assert_eq!(
            parse_process(1, &huge, b"x", 4, 100).unwrap().cpu_time_ms,
            u64::MAX / 100
        );
        // Cut short or garbage: no process, no panic.
        assert_eq!(parse_process(1, "1 (x", b"", 4, 100), None);
        assert_eq!(parse_process(1, "1 (x) S 1 2", b"", 4, 100), None);
        assert_eq!(parse_process(1, "", b"", 4, 100), None);
    }

    #[test]
    fn processors_and_architecture() {
        let cpuinfo = "processor\t: 0\nmodel name\t: X\n\nprocessor\t: 1\nmodel name\t: X\n";
        assert_eq!(count_processors(cpuinfo), 2);
        assert_eq!(architecture("x86_64"), Some("x86_64"));
        assert_eq!(architecture("aarch64"), Some("arm"));
        assert_eq!(architecture("riscv64"), None);
    }

    /// This machine's processes as /proc lists them: this test's own among
    /// them, with its command line.
    #[test]
    fn reads_this_machines_processes() {
        let host = LinuxHost::default();
        let processes = host.processes().unwrap();
        let me = processes
            .iter()
            .find(|p| p.pid == std::process::id())
            .expect("this process is listed");
        let argv0 = std::env::args().next().unwrap();
        assert!(me.command.starts_with(&argv0), "{}", me.command);
        // The main thread's state (it waits for this test's thread).
        assert!(["Running", "Sleeping"].contains(&me.state), "{}", me.state);
        assert!(me.size_kib > 0);
        assert_eq!(
            host.processors().len(),
            count_processors(&std::fs::read_to_string("/proc/cpuinfo").unwrap())
        );
    }

    #[test]
    fn uptime() {
        assert_eq!(
            parse_uptime("12345.67 54321.00\n").unwrap(),
            Duration::from_secs_f64(12345.67)
        );
        assert!(parse_uptime("").is_err());
        assert!(parse_uptime("-1 2").is_err());
        assert!(parse_uptime("NaN 2").is_err());
        // Found by fuzzing: too big for a Duration.
        assert!(parse_uptime("4e68").is_err());
        assert!(parse_uptime("inf 1").is_err());
    }

    #[test]
    fn meminfo() {
        let text = "MemTotal:       24576000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(
            parse_meminfo(text).unwrap(),
            Memory {
                total_kib: 24576000,
                free_kib: 20000000
            }
        );
        let old_kernel = "MemTotal: 1000 kB\nMemFree: 300 kB\n";
        assert_eq!(parse_meminfo(old_kernel).unwrap().free_kib, 300);
        assert!(parse_meminfo("MemFree: 3 kB").is_err());
    }

    #[test]
    fn cpu() {
        let first = parse_cpu_times("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(
            first,
            CpuTimes {
                busy: 200,
                total: 1000
            }
        );
        assert_eq!(first.usage_since(None), 20);
        let second = parse_cpu_times("cpu  150 0 150 800 100 0 0 0 0 0\n").unwrap();
        assert_eq!(second.usage_since(Some(&first)), 50);
        assert!(parse_cpu_times("intr 1 2 3").is_err());
        // Counters near u64::MAX (fuzzing): saturated, not an overflow.
        let max = u64::MAX;
        let huge = parse_cpu_times(&format!("cpu  {max} {max} 1 {max} {max}\n")).unwrap();
        assert_eq!(huge.total, u64::MAX);
        assert!(huge.usage_since(Some(&first)) <= 100);
        assert!(first.usage_since(Some(&huge)) <= 100);
    }

    #[test]
    fn reads_the_real_host() {
        let host = LinuxHost::default();
        assert!(host.uptime().unwrap() > Duration::ZERO);
        let memory = host.memory().unwrap();
        assert!(memory.total_kib > 0 && memory.free_kib <= memory.total_kib);
        assert!(host.cpu_usage("test").unwrap() <= 100);
    }
}

/// Readers with their own "since last read" state kept at most: the
/// management origins (an ACS, a few LwM2M servers, the CLI).
const MAX_READERS: usize = 16;

/// The system log from journald, through `journalctl` (its stable
/// interface; the journal file format is not). The incremental read keeps
/// journald's cursor, so nothing is read twice or skipped.
pub struct JournalLog {
    /// Each reader's cursor, locked for the whole of that reader's read:
    /// two reads of one reader never start from the same cursor.
    cursors: std::sync::Mutex<
        std::collections::HashMap<String, std::sync::Arc<std::sync::Mutex<Option<String>>>>,
    >,
    /// Lines a read returns at most.
    pub lines: usize,
    /// The program to run (journalctl, from PATH).
    pub program: std::path::PathBuf,
}

impl Default for JournalLog {
    fn default() -> JournalLog {
        JournalLog {
            cursors: std::sync::Mutex::new(std::collections::HashMap::new()),
            lines: 1000,
            program: "journalctl".into(),
        }
    }
}

impl JournalLog {
    /// Runs journalctl; returns the entries and the cursor after them.
    /// Bounded: at most `lines` entries, at most [`JOURNAL_BYTES`] of
    /// output, and killed after [`JOURNAL_LIMIT`]. Output cut at the byte
    /// bound has lost its cursor line: asked again for fewer entries, so
    /// a reader's cursor always moves on.
    fn journal(&self, after: Option<&str>) -> Result<(String, Option<String>), PlatformError> {
        let deadline = std::time::Instant::now() + JOURNAL_LIMIT;
        let mut lines = self.lines.max(1);
        loop {
            let (text, cut) = self.journal_once(after, lines, deadline)?;
            let (entries, cursor) = split_cursor(&text);
            if !cut || cursor.is_some() || lines == 1 {
                return Ok((entries, cursor));
            }
            lines = (lines / 8).max(1);
        }
    }

    /// One journalctl run: its output, and whether it was cut.
    fn journal_once(
        &self,
        after: Option<&str>,
        lines: usize,
        deadline: std::time::Instant,
    ) -> Result<(String, bool), PlatformError> {
        let mut command = std::process::Command::new(&self.program);
        command.args([
            "--quiet",
            "--no-pager",
            "--output=short-iso",
            "--show-cursor",
        ]);
        command.arg(format!("--lines={lines}"));
        if let Some(cursor) = after {
            command.arg(format!("--after-cursor={cursor}"));
        }
        let out = bounded_output(&mut command, "journald", JOURNAL_BYTES, deadline)?;
        let cut = out.len() as u64 >= JOURNAL_BYTES;
        Ok((String::from_utf8_lossy(&out).into_owned(), cut))
    }
}

/// Runs `command` (stdin and stderr closed) and returns what it wrote, at
/// most `limit` bytes, killed at `deadline`; reaped in every case. A
/// program that cannot start makes `service` unavailable; a failure
/// with no output is an error.
pub(crate) fn bounded_output(
    command: &mut std::process::Command,
    service: &str,
    limit: u64,
    deadline: std::time::Instant,
) -> Result<Vec<u8>, PlatformError> {
    use std::io::Read as _;
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    // ETXTBSY: the program is being replaced (a package upgrade), or
    // another thread's fork still holds it open for writing; a moment
    // later it runs. A few tries, within the deadline.
    let mut tries = 0;
    let mut child = loop {
        match command.spawn() {
            Err(e)
                if e.raw_os_error() == Some(26)
                    && tries < 5
                    && std::time::Instant::now() < deadline =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            spawned => {
                break spawned.map_err(|e| {
                    PlatformError::Unavailable(format!("{service} ({program}: {e})"))
                })?;
            }
        }
    };
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(PlatformError::Failed(format!("{program}: no output pipe")));
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let reader = std::thread::Builder::new()
        .name("dmagent-output".into())
        .spawn(move || {
            let mut out = Vec::new();
            let read = stdout.take(limit).read_to_end(&mut out);
            let _ = tx.send(read.map(|_| out));
        });
    if let Err(e) = reader {
        let _ = child.kill();
        let _ = child.wait();
        return Err(PlatformError::Failed(format!("{program}: no thread: {e}")));
    }
    let output = rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
    // Killed when it took too long or wrote more than we read; reaped
    // in every case.
    let _ = child.kill();
    let status = child.wait();
    let out = match output {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => return Err(PlatformError::Failed(format!("{program}: {e}"))),
        Err(_) => {
            return Err(PlatformError::Unavailable(format!(
                "{service} ({program} gave no answer in time)"
            )));
        }
    };
    match status {
        Ok(status) if !status.success() && out.is_empty() => {
            Err(PlatformError::Failed(format!("{program}: {status}")))
        }
        _ => Ok(out),
    }
}

/// Whether journald keeps its journal on disk, from its configuration
/// files in order (the last Storage= wins) and whether /var/log/journal
/// exists (what Storage=auto, the default, looks at).
pub fn journal_persistent<'t>(files: impl Iterator<Item = &'t str>, directory: bool) -> bool {
    let mut storage = "auto".to_owned();
    for text in files {
        for line in text.lines() {
            if let Some((key, value)) = line.split_once('=')
                && key.trim() == "Storage"
            {
                storage = value.trim().to_owned();
            }
        }
    }
    match storage.as_str() {
        "persistent" => true,
        "volatile" | "none" => false,
        _ => directory,
    }
}

/// How long journalctl may take.
const JOURNAL_LIMIT: std::time::Duration = std::time::Duration::from_secs(4);
/// The most output one read takes (1000 lines of a verbose log fit).
const JOURNAL_BYTES: u64 = 1 << 20;

/// Entries and the `-- cursor: ...` line journalctl ends with.
fn split_cursor(text: &str) -> (String, Option<String>) {
    let mut entries = String::new();
    let mut cursor = None;
    for line in text.lines() {
        match line.strip_prefix("-- cursor: ") {
            Some(c) => cursor = Some(c.trim().to_owned()),
            None => {
                entries.push_str(line);
                entries.push('\n');
            }
        }
    }
    (entries, cursor)
}

impl crate::SystemLog for JournalLog {
    fn maximum_size(&self) -> u64 {
        JOURNAL_BYTES
    }

    /// journald keeps its journal on disk with Storage=persistent, or with
    /// Storage=auto (its default) when /var/log/journal exists; in /run
    /// with volatile; nowhere with none (journald.conf(5)).
    fn persistent(&self) -> Option<bool> {
        // The main file (/etc's, else the vendor's), then the drop-ins by
        // name, one of a name in /etc masking /run's and the vendor's
        // (systemd.syntax(7)).
        let main = [
            "/etc/systemd/journald.conf",
            "/usr/lib/systemd/journald.conf",
        ]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists());
        let mut drop_ins: std::collections::BTreeMap<std::ffi::OsString, std::path::PathBuf> =
            std::collections::BTreeMap::new();
        for dir in [
            "/usr/lib/systemd/journald.conf.d",
            "/run/systemd/journald.conf.d",
            "/etc/systemd/journald.conf.d",
        ] {
            for path in std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .filter_map(|e| Some(e.ok()?.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            {
                if let Some(name) = path.file_name() {
                    drop_ins.insert(name.to_owned(), path);
                }
            }
        }
        let files: Vec<std::path::PathBuf> =
            main.into_iter().chain(drop_ins.into_values()).collect();
        let texts: Vec<String> = files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .collect();
        Some(journal_persistent(
            texts.iter().map(String::as_str),
            std::path::Path::new("/var/log/journal").is_dir(),
        ))
    }

    fn read_all(&self) -> Result<String, PlatformError> {
        self.journal(None).map(|(entries, _)| entries)
    }

    fn read_new(&self, reader: &str) -> Result<String, PlatformError> {
        // The map is held only to find the reader's cursor: readers do not
        // wait on each other, and one reader's reads take turns.
        let slot = {
            let mut cursors = lock(&self.cursors);
            if cursors.len() >= MAX_READERS && !cursors.contains_key(reader) {
                cursors.clear();
            }
            std::sync::Arc::clone(cursors.entry(reader.to_owned()).or_default())
        };
        let mut cursor = lock(&slot);
        let (entries, next) = self.journal(cursor.as_deref())?;
        if let Some(next) = next {
            *cursor = Some(next);
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod journal_tests {
    #[test]
    fn the_journal_is_persistent_as_its_configuration_says() {
        let commented = "[Journal]\n#Storage=auto\n";
        assert!(journal_persistent([commented].into_iter(), true));
        assert!(!journal_persistent([commented].into_iter(), false));
        assert!(!journal_persistent(
            [
                "[Journal]\nStorage=persistent\n",
                "[Journal]\nStorage=volatile\n"
            ]
            .into_iter(),
            true
        ));
        assert!(journal_persistent(
            ["[Journal]\nStorage=persistent\n"].into_iter(),
            false
        ));
        assert!(!journal_persistent(["Storage=none"].into_iter(), true));
        assert!(!journal_persistent(
            ["Storage = volatile"].into_iter(),
            true
        ));
    }

    use super::*;
    use crate::SystemLog as _;

    /// A stand-in for journalctl: a shell script.
    fn fake(dir: &tempfile::TempDir, script: &str) -> JournalLog {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.path().join("journalctl");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        JournalLog {
            program: path,
            ..JournalLog::default()
        }
    }

    #[test]
    fn each_reader_resumes_after_its_cursor() {
        let dir = tempfile::tempdir().unwrap();
        // Prints its arguments' cursor back, so the test sees what it got.
        let log = fake(
            &dir,
            r#"for a in "$@"; do case "$a" in --after-cursor=*) echo "after ${a#--after-cursor=}";; esac; done
echo "line"; echo "-- cursor: c$$""#,
        );
        assert_eq!(log.read_new("a").unwrap(), "line\n");
        let second = log.read_new("a").unwrap();
        assert!(second.starts_with("after c"), "{second}");
        assert_eq!(log.read_new("b").unwrap(), "line\n");
    }

    #[test]
    fn a_journalctl_that_hangs_is_given_up_and_killed() {
        let dir = tempfile::tempdir().unwrap();
        // `exec`: the process killed is the one that hangs.
        let log = fake(&dir, "exec sleep 30");
        let error = log.read_all().unwrap_err();
        assert!(matches!(error, PlatformError::Unavailable(_)), "{error}");
        assert!(error.to_string().contains("no answer"), "{error}");
    }

    #[test]
    fn output_cut_at_the_cap_is_asked_again_for_fewer_entries() {
        let dir = tempfile::tempdir().unwrap();
        // Floods when asked for 1,000 entries; answers with a cursor for
        // fewer.
        let log = fake(
            &dir,
            r#"case "$*" in *--lines=1000*) exec yes 'a long line';; esac
case "$*" in *--after-cursor=c1*) echo later;; *) echo fewer;; esac
echo "-- cursor: c1""#,
        );
        assert_eq!(log.read_new("r").unwrap(), "fewer\n");
        assert_eq!(log.read_new("r").unwrap(), "later\n", "the cursor moved on");
    }

    #[test]
    fn output_past_the_cap_is_cut_and_the_writer_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let log = fake(&dir, "yes 'a long line of a chatty daemon'");
        let text = log.read_all().unwrap();
        assert!(text.len() as u64 <= JOURNAL_BYTES + 1, "{}", text.len());
        assert!(text.len() as u64 > JOURNAL_BYTES / 2);
    }

    #[test]
    fn the_cursor_line_is_split_off() {
        let (entries, cursor) =
            split_cursor("2026-12-01T16:00:00+0000 host kernel: eth0 up\n-- cursor: s=abc;i=1f\n");
        assert_eq!(entries, "2026-12-01T16:00:00+0000 host kernel: eth0 up\n");
        assert_eq!(cursor.as_deref(), Some("s=abc;i=1f"));
        assert_eq!(split_cursor(""), (String::new(), None));
    }
}
