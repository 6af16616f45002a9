import ArgumentParser
import Dispatch
import Foundation
import ReplayService
import ReplayStorage

/// The `loom-replay` command: serves Loom replay tables over gRPC.
@main
struct LoomReplay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loom-replay",
        abstract: "Loom's replay service (Reverb-style tables over gRPC).",
        subcommands: [Serve.self]
    )
}

/// `loom-replay serve`: loads table configs, restores the newest checkpoint, serves until
/// SIGTERM/SIGINT.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve replay tables until SIGTERM or SIGINT.")

    @Option(help: "Table configs: a JSON file holding a list of TableConfig, or {\"tables\": [...]}.")
    var config: String

    @Option(help: "Port to listen on (0 picks a free one, printed at start).")
    var port: Int = 0

    @Option(help: "Address to bind.")
    var host: String = "127.0.0.1"

    @Option(name: .customLong("checkpoint-dir"), help: "Checkpoint root: restored from at start, written by the Checkpoint RPC.")
    var checkpointDir: String?

    @Option(help: "Bearer token every call must carry ('authorization: Bearer <token>').")
    var token: String?

    @Flag(name: .customLong("checkpoint-on-exit"), help: "Write a checkpoint before shutting down (needs --checkpoint-dir).")
    var checkpointOnExit = false

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port \(port): expected 0...65535") }
        if checkpointOnExit && checkpointDir == nil { throw ValidationError("--checkpoint-on-exit needs --checkpoint-dir") }
    }

    func run() async throws {
        let tables = try loadTableConfigs(path: config)
        let replay: ReplayServer
        if let dir = checkpointDir {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            replay = try ReplayServer(tables: tables, checkpointRoot: dir)
        } else {
            replay = try ReplayServer(tables: tables)
        }
        let service = ReplayServiceHost(replay: replay, host: host, port: port, token: token, checkpointRoot: checkpointDir)
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
            FileHandle.standardOutput.write(Data("loom-replay: serving \(tables.map(\.name).joined(separator: ", ")) on \(host):\(bound)\n".utf8))
            try await group.waitForAll()
        }
        for s in sources { s.cancel() }
        FileHandle.standardOutput.write(Data("loom-replay: stopped\n".utf8))
    }
}

/// Reads table configs from a JSON file: either a list of `TableConfig` or an object with
/// a `tables` list. Errors name the file and what was expected.
func loadTableConfigs(path: String) throws -> [TableConfig] {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw ValidationError("--config \(path): cannot read the file")
    }
    struct Wrapped: Decodable { var tables: [TableConfig] }
    let decoder = JSONDecoder()
    let tables: [TableConfig]
    if let list = try? decoder.decode([TableConfig].self, from: data) {
        tables = list
    } else {
        do {
            tables = try decoder.decode(Wrapped.self, from: data).tables
        } catch {
            throw ValidationError("--config \(path): expected JSON [TableConfig] or {\"tables\": [TableConfig]} (YAML is not supported yet): \(error)")
        }
    }
    guard !tables.isEmpty else { throw ValidationError("--config \(path): expected at least one table, found none") }
    return tables
}
