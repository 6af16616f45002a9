import ArgumentParser
import Dispatch
import Foundation
import TensorCore
import TensorKernels

/// `loom bench`: op-level benchmarks (GEMM, conv, elementwise, reductions) as a table and JSON.
///
/// Each row is the median of `--repeats` timed runs after a warm-up. Rows that have a
/// natural baseline in the same process (OpenBLAS called directly for GEMM, memcpy for
/// streaming ops) report the ratio. `Benchmarks/compare.py` joins this JSON with the
/// PyTorch script's output.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Benchmark Loom's ops (GEMM, conv2d, elementwise, reductions).")

    @Option(help: "Timed runs per row (the median is reported).") var repeats: Int = 7
    @Option(help: "Write results as JSON to this file.") var json: String?
    @Option(help: "Only rows whose name contains this string.") var filter: String?
    @Flag(inversion: .prefixedNo, help: "conv2d: weight gradients of the layers the direct kernel takes also direct (default), or im2col + GEMM (see Conv2dDirect.weightGradient).") var directWeightGradient = true
    @Flag(help: "Run a competing busy-loop process on one core while measuring.") var busy = false
    @Option(help: "Direct convolution kernel for stride-1 Float32 layers: auto, always or never.") var convDirect: String = "auto"

    func validate() throws {
        guard repeats >= 1 else { throw ValidationError("--repeats \(repeats): expected at least 1") }
        _ = try parseConvDirect(convDirect)
    }

    func run() throws {
        var busyProcess: Process?
        if busy { busyProcess = try startBusyLoop() }
        defer { busyProcess?.terminate() }
        Conv2dDirect.policy = try parseConvDirect(convDirect)
        Conv2dDirect.weightGradient = directWeightGradient
        print("OpenBLAS core \(BlasInfo.coreName), BLAS threads \(BlasInfo.threads), Loom kernel threads \(KernelThreading.maxThreads)\(busy ? ", with a competing busy process" : "")")
        let rows = BenchSuite(repeats: repeats, filter: filter).runAll()
        printTable(rows)
        if let json {
            let data = try JSONEncoder().encode(rows)
            try data.write(to: URL(fileURLWithPath: json))
            print("wrote \(json)")
        }
    }
}

/// `--conv-direct auto|always|never`.
func parseConvDirect(_ text: String) throws -> Conv2dDirectPolicy {
    switch text {
    case "auto": return .auto
    case "always": return .always
    case "never": return .never
    default: throw ValidationError("--conv-direct '\(text)': expected auto, always or never")
    }
}

/// Starts `sh -c 'while :; do :; done'`, a process that keeps one core busy.
func startBusyLoop() throws -> Process {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", "while :; do :; done"]
    try p.run()
    return p
}

/// One benchmark result.
struct BenchRow: Codable {
    var name: String
    var seconds: Double
    /// Work per run: FLOPs for compute rows, bytes moved for streaming rows.
    var work: Double
    var unit: String
    /// Rate of the in-process baseline (OpenBLAS direct, memcpy), if any.
    var baselineRate: Double?
    var baselineName: String?

    var rate: Double { work / seconds / 1e9 }
}

func printTable(_ rows: [BenchRow]) {
    print("")
    print("op".padding(toLength: 44, withPad: " ", startingAt: 0) + "  median ms    rate        baseline            ratio")
    for r in rows {
        var line = r.name.padding(toLength: 44, withPad: " ", startingAt: 0)
        line += String(format: "  %9.3f  %7.2f %@", r.seconds * 1e3, r.rate, r.unit.padding(toLength: 7, withPad: " ", startingAt: 0))
        if let b = r.baselineRate, let n = r.baselineName {
            line += String(format: "  %7.2f %@", b, n.padding(toLength: 10, withPad: " ", startingAt: 0))
            line += String(format: "  %5.1f%%", 100 * r.rate / b)
        }
        print(line)
    }
}

/// Median wall time of `body` over `repeats` runs after one warm-up run.
func medianSeconds(repeats: Int, _ body: () -> Void) -> Double {
    body()
    var times: [Double] = []
    for _ in 0..<repeats {
        let t0 = DispatchTime.now().uptimeNanoseconds
        body()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
    }
    times.sort()
    return times[times.count / 2]
}

struct BenchSuite {
    var repeats: Int
    var filter: String?

    func wanted(_ name: String) -> Bool { filter.map { name.contains($0) } ?? true }

    func runAll() -> [BenchRow] {
        var rows: [BenchRow] = []
        rows += gemmRows()
        rows += convRows()
        rows += streamingRows()
        rows += sortRows()
        return rows
    }

    func gemmRows() -> [BenchRow] {
        var rows: [BenchRow] = []
        for n in [256, 1024, 2048] {
            let name = "matmul \(n)x\(n)x\(n) f32"
            guard wanted(name) else { continue }
            let a = Tensor.randn([n, n]), b = Tensor.randn([n, n])
            let reps = n >= 2048 ? max(3, repeats / 2) : repeats
            let t = medianSeconds(repeats: reps) { _ = noGrad { a.matmul(b) } }
            // OpenBLAS called directly on the same buffers.
            var c = [Float](repeating: 0, count: n * n)
            let op = BlasOperand(transposed: false, leadingDimension: n)
            let tb = a.withStoragePointer(Float.self) { pa in
                b.withStoragePointer(Float.self) { pb in
                    c.withUnsafeMutableBufferPointer { pc in
                        medianSeconds(repeats: reps) {
                            sgemm(m: n, n: n, k: n, a: pa, aOp: op, b: pb, bOp: op, c: pc.baseAddress!, ldc: n)
                        }
                    }
                }
            }
            let flops = 2.0 * Double(n) * Double(n) * Double(n)
            rows.append(BenchRow(name: name, seconds: t, work: flops, unit: "GFLOP/s", baselineRate: flops / tb / 1e9, baselineName: "OpenBLAS"))
        }
        return rows
    }

    func convRows() -> [BenchRow] { convBenchRows(self) }

    func streamingRows() -> [BenchRow] {
        var rows: [BenchRow] = []
        let n = 1 << 22  // 4M floats = 16 MiB per operand
        let x = Tensor.randn([n]), y = Tensor.randn([n])
        // memcpy baseline: read n floats, write n floats.
        let src = UnsafeMutableRawPointer.allocate(byteCount: n * 4, alignment: 64)
        let dst = UnsafeMutableRawPointer.allocate(byteCount: n * 4, alignment: 64)
        memset(src, 1, n * 4)
        memset(dst, 0, n * 4)
        defer { src.deallocate(); dst.deallocate() }
        let tcopy = medianSeconds(repeats: repeats) { memcpy(dst, src, n * 4) }
        let memcpyRate = Double(2 * n * 4) / tcopy / 1e9
        func row(_ name: String, bytes: Int, _ body: @escaping () -> Void) {
            guard wanted(name) else { return }
            let t = medianSeconds(repeats: repeats, body)
            rows.append(BenchRow(name: name, seconds: t, work: Double(bytes), unit: "GB/s", baselineRate: memcpyRate, baselineName: "memcpy"))
        }
        let b1 = 2 * n * 4, b2 = 3 * n * 4
        row("relu 4M f32", bytes: b1) { _ = noGrad { x.relu() } }
        row("neg 4M f32", bytes: b1) { _ = noGrad { -x } }
        row("exp 4M f32", bytes: b1) { _ = noGrad { x.exp() } }
        row("tanh 4M f32", bytes: b1) { _ = noGrad { x.tanh() } }
        row("add 4M f32", bytes: b2) { _ = noGrad { x + y } }
        row("mul 4M f32", bytes: b2) { _ = noGrad { x * y } }
        let m = x.reshaped([2048, 2048]), row1 = Tensor.randn([2048])
        row("add broadcast [2048,2048]+[2048] f32", bytes: b1) { _ = noGrad { m + row1 } }
        row("sum 4M f32 (all)", bytes: n * 4) { _ = noGrad { x.sum() } }
        row("sum [2048,2048] dim 1 f32", bytes: n * 4) { _ = noGrad { m.sum(dim: 1) } }
        row("sum [2048,2048] dim 0 f32", bytes: n * 4) { _ = noGrad { m.sum(dim: 0) } }
        row("max [2048,2048] dim 0 f32 (values, indices)", bytes: n * 4) { _ = noGrad { m.max(dim: 0) } }
        let mt = m.transposed(0, 1)
        row("transpose copy [2048,2048] f32", bytes: b1) { _ = noGrad { mt.contiguous() } }
        return rows
    }

    /// Sort with indices (`sorted(dim:)`, like `torch.sort`): one long line and many short lines.
    /// Rate: elements sorted per second (unit Gelem/s).
    func sortRows() -> [BenchRow] {
        var rows: [BenchRow] = []
        for (name, shape) in [("sort 1M f32 (one line)", [1 << 20]), ("sort [4096,256] f32 dim 1", [4096, 256])] {
            guard wanted(name) else { continue }
            let x = Tensor.randn(shape)
            let t = medianSeconds(repeats: repeats) { _ = noGrad { x.sorted(dim: -1) } }
            rows.append(BenchRow(name: name, seconds: t, work: Double(x.count), unit: "Gelem/s"))
        }
        return rows
    }
}
