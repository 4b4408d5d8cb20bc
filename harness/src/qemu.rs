//! The QEMU command line for a [`Machine`].
//!
//! Built as an argv vector, never as a shell string: user-supplied values
//! (extra args, kernel command line) can only ever be single arguments.
//!
//! Facts behind the defaults:
//! * Guest RAM is a `memory-backend-memfd` with `share=on`: a vhost-user
//!   backend (`vhost-device-vsock`) maps guest memory through the file
//!   descriptors QEMU passes it, and QEMU passes only regions backed by one
//!   (QEMU `hw/virtio/vhost-user.c`, `vhost_user_fill_set_mem_table_msg`);
//!   the mapping must be shared for both processes to see the virtqueues.
//! * On pseries every edu gets a `spapr-pci-host-bridge` of its own: Linux
//!   makes one IOMMU table group (one PE, one IOMMU group) per PHB DMA
//!   window, shared by every device below it
//!   (`arch/powerpc/platforms/pseries/iommu.c`, `pci_dma_dev_setup_pSeriesLP`);
//!   an edu with `bridge = true` goes behind a `pci-bridge` on its PHB's
//!   root bus, in that PHB's PE.
//! * q35 with `intel-iommu,intremap=on` runs with `kernel-irqchip=split`
//!   (`qemu-configs/q35.toml`): QEMU refuses interrupt remapping with the
//!   whole irqchip in KVM (`hw/i386/x86-iommu.c`, `x86_iommu_realize`:
//!   "Interrupt Remapping cannot work with kernel-irqchip=on").

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::machine::{Arch, Device, Machine, QemuBuild};

/// Which accelerator QEMU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Software emulation: works everywhere.
    Tcg,
    /// Hardware virtualisation (x86_64 guests on x86_64 hosts with /dev/kvm).
    Kvm,
}

impl Accel {
    /// The `-accel` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// Files and sockets one boot uses.
#[derive(Debug, Clone)]
pub struct BootFiles {
    /// Kernel image (`vmlinux` on ppc64le, `bzImage` on x86_64).
    pub kernel: PathBuf,
    /// The initramfs (newc cpio).
    pub initramfs: PathBuf,
    /// vhost-user socket of the vsock backend (None: no vsock device).
    pub vhost_socket: Option<PathBuf>,
    /// virtio-serial fallback channel socket (used when there is no vsock backend).
    pub serial_channel: Option<PathBuf>,
    /// QMP socket QEMU listens on.
    pub qmp_socket: PathBuf,
}

/// What the guest should do after boot (the initramfs reads `iobench.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestMode {
    /// Start the agent and connect to the host.
    Agent,
    /// Give an interactive shell on the console.
    Shell,
    /// Do nothing, forever (tests the harness's hang detection).
    Hang,
    /// Power off as soon as init has mounted the filesystems (bare boot floor).
    Poweroff,
}

/// Everything that varies per boot besides the machine.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// Accelerator.
    pub accel: Accel,
    /// Guest behaviour.
    pub mode: GuestMode,
    /// Extra kernel command-line words for this boot only.
    pub cmdline: String,
    /// Start QEMU's gdbstub on this TCP port, halted.
    pub gdb_port: Option<u16>,
    /// Put the console on this unix socket (QEMU listens) instead of stdio.
    pub console_socket: Option<PathBuf>,
}

impl Default for BootOptions {
    fn default() -> Self {
        BootOptions {
            accel: Accel::Tcg,
            mode: GuestMode::Agent,
            cmdline: String::new(),
            gdb_port: None,
            console_socket: None,
        }
    }
}

/// The kernel command line for a boot.
pub fn kernel_cmdline(m: &Machine, opts: &BootOptions, vsock: bool) -> String {
    let mut words = vec![
        format!("console={}", m.arch.console()),
        "panic=-1".to_string(),
        "rdinit=/init".to_string(),
        "oops=panic".to_string(),
    ];
    let mode = match opts.mode {
        GuestMode::Agent => "agent",
        GuestMode::Shell => "shell",
        GuestMode::Hang => "hang",
        GuestMode::Poweroff => "poweroff",
    };
    words.push(format!("iobench.mode={mode}"));
    words.push(format!(
        "iobench.channel={}",
        if vsock { "vsock" } else { "serial" }
    ));
    words.push(format!("iobench.connect=2:{}", crate::proto::HOST_PORT));
    words.push(format!("iobench.listen={}", crate::proto::AGENT_PORT));
    let ids = m.vfio_ids();
    if !ids.is_empty() {
        words.push(format!("iobench.bind_vfio={}", ids.join(",")));
    }
    for extra in [&m.kernel.cmdline, &opts.cmdline] {
        words.extend(extra.split_whitespace().map(String::from));
    }
    words.join(" ")
}

fn kv(head: &str, opts: impl IntoIterator<Item = (String, String)>) -> String {
    let mut s = head.to_string();
    for (k, v) in opts {
        s.push(',');
        s.push_str(&k);
        s.push('=');
        s.push_str(&v);
    }
    s
}

/// The full argv (without the binary) for booting `m`.
pub fn args(m: &Machine, files: &BootFiles, opts: &BootOptions) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    let mem = m.memory.qemu_arg();
    let mut machine_opts: Vec<(String, String)> = m
        .qemu
        .options
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    machine_opts.push(("memory-backend".into(), "mem".into()));
    push(&["-machine", &kv(&m.qemu.machine, machine_opts)]);
    if m.qemu.build == QemuBuild::Patched {
        push(&["-L", FIRMWARE_DIR]);
    }
    push(&["-accel", opts.accel.as_str()]);
    if opts.accel == Accel::Kvm {
        push(&["-cpu", "host"]);
    } else if m.arch == Arch::X86_64 {
        push(&["-cpu", "max"]);
    }
    push(&["-m", &mem, "-smp", &m.cpus.to_string()]);
    // vhost-user needs guest RAM in a shared, fd-backed region.
    push(&[
        "-object",
        &format!("memory-backend-memfd,id=mem,size={mem},share=on"),
    ]);
    push(&["-nodefaults", "-nographic", "-no-reboot", "-no-user-config"]);
    // Console on QEMU's stdin/stdout (signal=off so Ctrl-C reaches the guest),
    // or on a unix socket a serial target drives like a board's console.
    match &opts.console_socket {
        None => push(&["-chardev", "stdio,id=con,signal=off,mux=off"]),
        Some(sock) => push(&[
            "-chardev",
            &format!("socket,id=con,path={},server=on,wait=off", sock.display()),
        ]),
    }
    match m.arch {
        Arch::Ppc64le => push(&["-device", "spapr-vty,chardev=con"]),
        Arch::X86_64 => push(&["-device", "isa-serial,chardev=con"]),
    }
    push(&[
        "-qmp",
        &format!("unix:{},server=on,wait=off", files.qmp_socket.display()),
    ]);
    if let Some(iommu) = &m.iommu {
        push(&["-device", &kv(&iommu.model, iommu.options.clone())]);
    }
    let root_bus = match m.arch {
        Arch::Ppc64le => "pci.0",
        Arch::X86_64 => "pcie.0",
    };
    // PHBs and their bridges are made once, before their first device.
    let (mut phbs, mut bridges) = (Vec::new(), Vec::new());
    for (slot, d) in m.devices.iter().enumerate() {
        let Device::Edu {
            id,
            phb,
            dma_mask,
            eeh,
            bridge,
            ..
        } = d;
        match (m.arch, phb) {
            (Arch::Ppc64le, Some(n)) => {
                if !phbs.contains(n) {
                    phbs.push(*n);
                    let eeh = if *eeh { ",x-emu-eeh=on" } else { "" };
                    push(&[
                        "-device",
                        &format!("spapr-pci-host-bridge,index={n},id=phb{n}{eeh}"),
                    ]);
                }
                let bus = if *bridge {
                    if !bridges.contains(n) {
                        bridges.push(*n);
                        push(&[
                            "-device",
                            &format!("pci-bridge,bus=phb{n}.0,addr=2.0,chassis_nr={n},id=br{n}"),
                        ]);
                    }
                    format!("br{n}")
                } else {
                    format!("phb{n}.0")
                };
                push(&[
                    "-device",
                    &format!("edu,id={id},bus={bus},addr=1.0,dma_mask={dma_mask}"),
                ]);
            }
            _ => {
                let addr = 0x10 + slot;
                push(&[
                    "-device",
                    &format!("edu,id={id},bus={root_bus},addr={addr:#x}.0,dma_mask={dma_mask}"),
                ]);
            }
        }
    }
    if let Some(sock) = &files.vhost_socket {
        push(&[
            "-chardev",
            &format!("socket,id=vsock,path={}", sock.display()),
        ]);
        push(&[
            "-device",
            &format!("vhost-user-vsock-pci,chardev=vsock,bus={root_bus}"),
        ]);
    }
    if let Some(sock) = &files.serial_channel {
        push(&[
            "-chardev",
            &format!(
                "socket,id=agentch,path={},server=on,wait=off",
                sock.display()
            ),
        ]);
        push(&["-device", &format!("virtio-serial-pci,bus={root_bus}")]);
        push(&[
            "-device",
            "virtserialport,chardev=agentch,name=iobench.agent",
        ]);
    }
    push(&["-kernel", &files.kernel.display().to_string()]);
    push(&["-initrd", &files.initramfs.display().to_string()]);
    push(&[
        "-append",
        &kernel_cmdline(m, opts, files.vhost_socket.is_some()),
    ]);
    if let Some(port) = opts.gdb_port {
        push(&["-gdb", &format!("tcp:127.0.0.1:{port}"), "-S"]);
    }
    a.extend(m.qemu.extra_args.iter().cloned());
    a
}

/// Debian's firmware directory (vof.bin, slof.bin): a patched QEMU built
/// without its blobs is pointed here with `-L`.
pub const FIRMWARE_DIR: &str = "/usr/share/qemu";

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn machine(name: &str) -> Machine {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu-configs");
        Machine::find(&dir, name).unwrap()
    }

    fn files() -> BootFiles {
        BootFiles {
            kernel: "/k".into(),
            initramfs: "/i".into(),
            vhost_socket: Some("/t/vhost.sock".into()),
            serial_channel: None,
            qmp_socket: "/t/qmp.sock".into(),
        }
    }

    fn after<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn the_patched_machine_gets_emulated_eeh_and_debians_firmware() {
        let m = machine("pseries-eeh");
        let a = args(&m, &files(), &BootOptions::default());
        assert!(
            after(&a, "-device").contains(&"spapr-pci-host-bridge,index=1,id=phb1,x-emu-eeh=on")
        );
        assert_eq!(after(&a, "-L"), vec![FIRMWARE_DIR]);
        let stock = machine("pseries");
        assert!(after(&args(&stock, &files(), &BootOptions::default()), "-L").is_empty());
    }

    #[test]
    fn a_bridged_edu_goes_behind_one_bridge_on_its_phb() {
        let a = args(
            &machine("pseries-eeh-bridge"),
            &files(),
            &BootOptions::default(),
        );
        let devs = after(&a, "-device");
        let at = |d: &str| devs.iter().position(|x| *x == d).expect(d);
        let phb = at("spapr-pci-host-bridge,index=1,id=phb1,x-emu-eeh=on");
        let edu0 = at("edu,id=edu0,bus=phb1.0,addr=1.0,dma_mask=0xffffffffffffffff");
        let bridge = at("pci-bridge,bus=phb1.0,addr=2.0,chassis_nr=1,id=br1");
        let edu1 = at("edu,id=edu1,bus=br1,addr=1.0,dma_mask=0xffffffffffffffff");
        assert!(phb < edu0 && edu0 < bridge && bridge < edu1, "{devs:?}");
        let phbs = devs
            .iter()
            .filter(|d| d.starts_with("spapr-pci-host-bridge"))
            .count();
        assert_eq!(phbs, 1, "{devs:?}");
    }

    #[test]
    fn pseries_puts_each_edu_on_its_own_phb() {
        let a = args(&machine("pseries-2pe"), &files(), &BootOptions::default());
        let devs = after(&a, "-device");
        assert!(devs.contains(&"spapr-pci-host-bridge,index=1,id=phb1"));
        assert!(devs.contains(&"edu,id=edu1,bus=phb2.0,addr=1.0,dma_mask=0xffffffffffffffff"));
        assert!(devs.contains(&"vhost-user-vsock-pci,chardev=vsock,bus=pci.0"));
        let m = after(&a, "-machine")[0];
        assert!(
            m.starts_with("pseries,") && m.contains("x-vof=on") && m.contains("memory-backend=mem"),
            "{m}"
        );
        assert!(after(&a, "-object")[0].contains("share=on"));
        assert!(after(&a, "-append")[0].contains("console=hvc0"));
    }

    #[test]
    fn q35_has_intremap_and_split_irqchip() {
        let a = args(&machine("q35"), &files(), &BootOptions::default());
        assert!(after(&a, "-device").contains(&"intel-iommu,intremap=on"));
        assert!(after(&a, "-machine")[0].contains("kernel-irqchip=split"));
        let cmdline = after(&a, "-append")[0];
        assert!(
            cmdline.contains("console=ttyS0") && cmdline.contains("iobench.bind_vfio=1234:11e8"),
            "{cmdline}"
        );
    }

    #[test]
    fn user_values_stay_single_arguments() {
        let mut m = machine("q35");
        m.qemu.extra_args = vec!["-d; rm -rf /".into()];
        let opts = BootOptions {
            cmdline: "a=1 b=2".into(),
            ..Default::default()
        };
        let a = args(&m, &files(), &opts);
        assert_eq!(a.last().unwrap(), "-d; rm -rf /");
        assert!(after(&a, "-append")[0].ends_with("intel_iommu=on a=1 b=2"));
    }

    #[test]
    fn gdb_halts_at_start() {
        let opts = BootOptions {
            gdb_port: Some(1234),
            ..Default::default()
        };
        let a = args(&machine("pseries"), &files(), &opts);
        assert!(
            a.windows(3)
                .any(|w| w == ["-gdb", "tcp:127.0.0.1:1234", "-S"])
        );
    }
}
