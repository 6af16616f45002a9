import ArgumentParser
import Dispatch
import Foundation
import ReplayService
import ReplayStorage
import TensorCore

/// The `loom-replay` command: serves Loom replay tables over gRPC and benchmarks them.
@main
struct LoomReplay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loom-replay",
        abstract: "Loom's replay service (Reverb-style tables over gRPC).",
        subcommands: [Serve.self, Bench.self, BenchWorker.self]
    )
}

/// `loom-replay serve`: loads table configs, restores the newest checkpoint, serves until
/// SIGTERM/SIGINT.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve replay tables until SIGTERM or SIGINT.")

    @Option(help: "Table configs: a .json, .yaml or .yml file holding a list of tables or {tables: [...]}.")
    var config: String

    @Option(help: "Port to listen on (0 picks a free one, printed at start).")
    var port: Int = 0

    @Option(help: "Address to bind (gRPC and metrics).")
    var host: String = "127.0.0.1"

    @Option(name: .customLong("checkpoint-dir"), help: "Checkpoint root: restored from at start, written by the Checkpoint RPC.")
    var checkpointDir: String?

    @Option(help: "Bearer token every call must carry ('authorization: Bearer <token>').")
    var token: String?

    @Flag(name: .customLong("checkpoint-on-exit"), help: "Write a checkpoint before shutting down (needs --checkpoint-dir).")
    var checkpointOnExit = false

    @Option(name: .customLong("metrics-port"), help: "Serve Prometheus metrics at http://<host>:<port>/metrics (0 picks a free port, printed at start).")
    var metricsPort: Int?

    @Option(name: .customLong("framed-port"), help: "Also serve the RPCs over Loom's framed TCP transport on this port (0 picks a free one, printed at start): no HTTP/2 copies, for Loom clients (ReplayClient transport .framed); plaintext only.")
    var framedPort: Int?

    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain: serve TLS only (needs --tls-key).")
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: "PEM private key of --tls-cert.")
    var tlsKey: String?

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port \(port): expected 0...65535") }
        if let m = metricsPort, !(0...65535).contains(m) { throw ValidationError("--metrics-port \(m): expected 0...65535") }
        if checkpointOnExit && checkpointDir == nil { throw ValidationError("--checkpoint-on-exit needs --checkpoint-dir") }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together; expected both or neither") }
        if let f = framedPort {
            guard (0...65535).contains(f) else { throw ValidationError("--framed-port \(f): expected 0...65535") }
            if tlsCert != nil { throw ValidationError("--framed-port serves plaintext only; it cannot be combined with --tls-cert") }
        }
    }

    func run() async throws {
        // Large message buffers (a response of 64 frames is 1.8 MB; gRPC's framer and both sides'
        // buffers are as large) come from the heap, not a fresh mmap each: page faults were ~8% of
        // a frame sampling run (5x fewer with this). Process-wide, so the executable does it, not
        // the client library (`Bench` and `BenchWorker` too).
        SystemAllocator.keepLargeBlocksInHeap()
        let tables: [TableConfig]
        do {
            tables = try TableConfigFile.load(path: config)
        } catch {
            throw ValidationError("--config \(error.message)")
        }
        let tls: ReplayServerTLS?
        if let tlsCert, let tlsKey {
            do {
                tls = try ReplayServerTLS(certificatePath: tlsCert, keyPath: tlsKey)
            } catch {
                throw ValidationError("\(error)")
            }
        } else {
            tls = nil
        }
        let replay: ReplayServer
        if let dir = checkpointDir {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            replay = try ReplayServer(tables: tables, checkpointRoot: dir)
        } else {
            replay = try ReplayServer(tables: tables)
        }
        let metrics = metricsPort == nil ? nil : ReplayMetrics(replay: replay)
        let service = ReplayServiceHost(replay: replay, host: host, port: port, token: token, checkpointRoot: checkpointDir,
                                        tls: tls, metrics: metrics, framedPort: framedPort)
        let endpoint = metrics.map { MetricsEndpoint(metrics: $0, host: host, port: metricsPort ?? 0) }
        let checkpointRoot = checkpointOnExit ? checkpointDir : nil

        let signalQueue = DispatchQueue(label: "loom-replay.signals")
        var sources: [any DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: signalQueue)
            source.setEventHandler {
                FileHandle.standardError.write(Data("loom-replay: signal \(sig), shutting down\n".utf8))
                if let root = checkpointRoot {
                    do throws(ReplayError) {
                        let path = try replay.checkpoint(to: root)
                        FileHandle.standardError.write(Data("loom-replay: checkpoint written to \(path)\n".utf8))
                    } catch {
                        FileHandle.standardError.write(Data("loom-replay: checkpoint failed: \(error)\n".utf8))
                    }
                }
                service.shutdown()
            }
            source.resume()
            sources.append(source)
        }

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await service.serve() }
            let bound = try await service.port
            let framed = try await service.framedPort
            let mport = try await endpoint?.start()
            // The serving line comes first: scripts read the gRPC port from the first line
            // (the first host:port), the framed port from its "framed on host:port".
            let security = tls == nil ? "plaintext" : "TLS"
            let framedText = framed.map { ", framed on \(host):\($0)" } ?? ""
            FileHandle.standardOutput.write(Data("loom-replay: serving \(tables.map(\.name).joined(separator: ", ")) on \(host):\(bound) (\(security))\(framedText)\n".utf8))
            if let mport {
                FileHandle.standardOutput.write(Data("loom-replay: metrics on http://\(host):\(mport)/metrics\n".utf8))
            }
            try await group.waitForAll()
        }
        try? await endpoint?.stop()
        for s in sources { s.cancel() }
        FileHandle.standardOutput.write(Data("loom-replay: stopped\n".utf8))
    }
}
