import ArgumentParser
import Collectives
import Foundation

/// A command that needs mpirun was started without it.
private struct NotUnderMPI: Error, CustomStringConvertible {
    let command: String
    var description: String {
        "\(command) runs under MPI, but this process was not started by mpirun: use `loom launch -np 2 -- \(command)` or `mpirun -np 2 loom \(command)`"
    }
}

/// The world group for a command: MPI under mpirun, else an error that says how to launch.
private func mpiWorld(timeout: Double, command: String) throws -> MPIProcessGroup {
    guard MPIProcessGroup.isLaunchedByMPI else { throw NotUnderMPI(command: command) }
    return try MPIProcessGroup.world(timeout: timeout)
}

/// The ranks mpirun placed on this host (1 outside mpirun) and this host's cores.
func localRanksAndCores() -> (ranks: Int, cores: Int) {
    let env = ProcessInfo.processInfo.environment
    let local = Int(env["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? "") ?? 1
    return (local, ProcessInfo.processInfo.activeProcessorCount)
}

private func parseSizes(_ text: String) throws -> [Int] {
    try text.split(separator: ",").map { part in
        let s = part.trimmingCharacters(in: .whitespaces).uppercased()
        let (digits, scale): (Substring, Int) = s.hasSuffix("M") ? (s.dropLast(), 1 << 20) : s.hasSuffix("K") ? (s.dropLast(), 1 << 10) : (Substring(s), 1)
        guard let v = Int(digits), v >= 0 else { throw ValidationError("size '\(part)': expected a number with optional K or M suffix, e.g. 4K,64M") }
        return v * scale
    }
}

/// `loom collectives-check`: every allreduce algorithm × size × dtype on the MPI world
/// against MPI_Allreduce and against the same algorithm run in-process (bitwise), plus
/// uneven reduce-scatter/all-gather, broadcast, sendRecv, barrier, compression, sparse.
struct CollectivesCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "collectives-check",
        abstract: "Check Loom's collectives under mpirun against MPI_Allreduce and the in-process result (PASS/FAIL per case).")
    @Option(help: "Seconds an op waits for peers before failing.") var timeout: Double = 120
    @Option(help: "Comma-separated allreduce element counts (default: 0,1,2,3,5,7,1000,64p+1,100003,1000003).") var sizes: String?
    @Option(help: "Run on N in-process ranks (threads) instead of MPI.") var inProcess: Int?

    func run() throws {
        let sizeList = try sizes.map(parseSizes)
        if let n = inProcess {
            guard n >= 1 else { throw ValidationError("--in-process \(n): expected at least 1 rank") }
            let results = try InProcessWorld.run(size: n, timeout: timeout) { g in
                try CollectivesCheck.run(group: g, sizes: sizeList) { c in
                    if g.rank == 0 { print("\(c.passed ? "PASS" : "FAIL")  \(c.name)\(c.detail.isEmpty ? "" : "  (\(c.detail))")") }
                }
            }
            try finish(results[0], backend: "inprocess", size: n)
            return
        }
        let g = try mpiWorld(timeout: timeout, command: "collectives-check")
        if g.rank == 0 { print("collectives-check: backend mpi, \(g.size) ranks, MPI thread level \(g.threadLevel)") }
        let cases = try CollectivesCheck.run(group: g, sizes: sizeList) { c in
            if g.rank == 0 {
                print("\(c.passed ? "PASS" : "FAIL")  \(c.name)\(c.detail.isEmpty ? (c.passed ? "" : "  (failed on another rank)") : "  (\(c.detail))")")
                fflush(nil)
            } else if !c.detail.isEmpty {
                FileHandle.standardError.write(Data("rank \(g.rank): FAIL \(c.name): \(c.detail)\n".utf8))
            }
        }
        try finish(cases, backend: "mpi", size: g.size, printing: g.rank == 0)
    }

    private func finish(_ cases: [CollectivesCheck.Case], backend: String, size: Int, printing: Bool = true) throws {
        let failed = cases.filter { !$0.passed }.count
        if printing { print("\(cases.count - failed)/\(cases.count) passed (\(backend), \(size) ranks)") }
        if failed > 0 { throw ExitCode(1) }
    }
}

/// `loom allreduce-bench`: bus bandwidth of our ring against MPI_Allreduce, and fused
/// against one-by-one allreduce of 200 tensors of 1–100 KiB.
struct AllreduceBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "allreduce-bench",
        abstract: "Allreduce bus bandwidth 4 KiB–64 MiB: our ring vs MPI_Allreduce (medians), and fused vs one-by-one.",
        discussion: "Columns: blocking MPI_Allreduce (the reference), our ring, and the group's .native allreduce (MPI_Iallreduce polled so that a missing peer times out). busbw = 2(p-1)/p x bytes / time; times are the slowest rank's, medians of --repeats.")
    @Option(help: "Comma-separated message sizes in bytes (K/M suffixes).") var sizes: String = "4K,16K,64K,256K,1M,4M,16M,64M"
    @Option(help: "Repeats per size (the median is reported).") var repeats: Int = 7
    @Option(help: "Ring pipeline chunk in bytes.") var chunkBytes: Int = 1 << 20
    @Option(help: "Tensors in the fused-vs-one-by-one run (0 skips it).") var lazyCount: Int = 200
    @Option(help: "Fused bucket size in bytes.") var bucketBytes: Int = 4 << 20
    @Option(help: "Seconds an op waits for peers before failing.") var timeout: Double = 300

    func run() throws {
        guard repeats > 0 else { throw ValidationError("--repeats \(repeats): expected at least 1") }
        let sizeList = try parseSizes(sizes)
        let g = try mpiWorld(timeout: timeout, command: "allreduce-bench")
        let (local, cores) = localRanksAndCores()
        let oversubscribed = local > cores
        let ring = CollectiveOptions(algorithm: .ring, chunkBytes: chunkBytes)
        if g.rank == 0 {
            print("allreduce-bench: \(g.size) ranks (\(local) on this host, \(cores) cores), MPI thread level \(g.threadLevel), ring chunk \(chunkBytes) B, median of \(repeats)")
            if oversubscribed { print("NOTE: oversubscribed (\(local) ranks > \(cores) cores): timings are not meaningful; correctness only") }
            print("| size | MPI_Allreduce µs | MPI busbw GB/s | ring µs | ring busbw GB/s | ring/MPI | .native (Iallreduce) busbw GB/s |")
            print("|---:|---:|---:|---:|---:|---:|---:|")
            fflush(nil)
        }
        // `bandwidth` checks the ring against the exact sum at every size before timing it.
        let rows = try AllReduceBench.bandwidth(group: g, sizes: sizeList, repeats: repeats, ring: ring) { r in
            guard g.rank == 0 else { return }
            let nb = r.busBandwidth(r.nativeSeconds) / 1e9, rb = r.busBandwidth(r.ringSeconds) / 1e9
            print(String(format: "| %@ | %.1f | %.2f | %.1f | %.2f | %.2fx | %.2f |", AllReduceBench.sizeText(r.bytes), r.nativeSeconds * 1e6, nb,
                         r.ringSeconds * 1e6, rb, nb > 0 ? rb / nb : 0, r.busBandwidth(r.pollingSeconds) / 1e9))
            fflush(nil)
        }
        _ = rows
        if lazyCount > 0 {
            let l = try AllReduceBench.lazy(group: g, count: lazyCount, repeats: repeats, fusedOptions: ring, bucketBytes: bucketBytes)
            if g.rank == 0 {
                print(String(format: "fused vs one-by-one: %d tensors of 1–100 KiB (%.2f MiB): one-by-one MPI_Allreduce %.2f ms, fused (ring, %d KiB buckets) %.2f ms: %.2fx",
                             l.tensors, Double(l.totalBytes) / 1048576, l.oneByOneSeconds * 1e3, bucketBytes >> 10, l.fusedSeconds * 1e3, l.ratio))
            }
        }
    }
}

/// `loom launch -np N [--hostfile F] -- <loom args>`: runs this loom binary on N ranks
/// through OpenMPI's mpirun (exec, so signals and the exit code are mpirun's).
struct Launch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run loom on N MPI ranks via mpirun (adds --allow-run-as-root as root, --oversubscribe when N > cores).")
    @Option(name: [.customLong("np", withSingleDash: true), .customShort("n")], help: "Number of ranks.") var np: Int
    @Option(help: "OpenMPI hostfile: runs the ranks across the listed machines.") var hostfile: String?
    @Flag(help: "Force --oversubscribe.") var oversubscribe = false
    @Flag(help: "Use TCP over loopback instead of shared memory (--mca btl self,tcp).") var tcp = false
    @Option(help: "OpenBLAS threads per rank (exported as OPENBLAS_NUM_THREADS).") var blasThreads: Int = 1
    @Flag(help: "Print the mpirun command instead of running it.") var dryRun = false
    @Argument(parsing: .postTerminator, help: "The loom subcommand and its arguments (after --).") var command: [String] = []

    func run() throws {
        if let hostfile, !FileManager.default.fileExists(atPath: hostfile) { throw ValidationError("hostfile '\(hostfile)' not found") }
        let argv: [String]
        do {
            argv = try MPILaunch.arguments(np: np, hostfile: hostfile, forceOversubscribe: oversubscribe, tcp: tcp, blasThreads: blasThreads,
                                           isRoot: getuid() == 0, cores: ProcessInfo.processInfo.activeProcessorCount,
                                           program: Self.executablePath(), command: command)
        } catch let e as MPILaunch.LaunchError { throw ValidationError(e.description) }
        if dryRun { print(argv.joined(separator: " ")); return }
        var cargs = argv.map { strdup($0) } + [nil]
        execvp(argv[0], &cargs)
        throw ValidationError("could not exec mpirun (\(String(cString: strerror(errno)))): install openmpi-bin")
    }

    /// This binary's absolute path (so remote hosts run the same file path).
    static func executablePath() -> String {
        if let p = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return p }
        return URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
    }
}
