import Foundation
import GRPCCore
@testable import ReplayClient
@testable import ReplayService
import ReplayServiceProto
import ReplayStorage
import TensorCore
import XCTest

/// The framed transport's pieces: `FramedBytes`, the gather encoding of sample responses,
/// the frame codec, and its errors. `make test` also reruns the service suites over it
/// (`LOOM_REPLAY_TEST_TRANSPORT=framed`, see `RunningService`).
final class FramedTransportTests: XCTestCase {
    /// Items whose frames span chunks (offsets, several chunks per item), plus a small
    /// column copied into the arena.
    private func samples() throws -> (samples: [ReplaySample], chunks: [Chunk]) {
        var chunks: [Chunk] = []
        for k in 0..<3 {
            let n = 3 * 84 * 84 * 4
            let frames = try Tensor((0..<n).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ k) }, shape: [3, 84, 84, 4])
            let reward = try Tensor([Float(k), Float(k) + 0.5, Float(k) + 0.25], shape: [3])
            chunks.append(try Chunk(key: UInt64(100 + k), columns: [frames, reward]))
        }
        let items = [
            ReplayItem(key: 1, table: "t", priority: 1, chunks: [chunks[0]], offset: 1, length: 2),
            ReplayItem(key: 2, table: "t", priority: 2, chunks: [chunks[0], chunks[1], chunks[2]], offset: 2, length: 5),
            ReplayItem(key: 3, table: "t", priority: 3, chunks: [chunks[2]], offset: 0, length: 3),
        ]
        let s = items.enumerated().map { i, item in
            ReplaySample(item: item, info: SampleInfo(key: item.key, probability: 0.25 * Double(i + 1), tableSize: 3,
                                                      priority: item.priority, timesSampled: i))
        }
        return (s, chunks)
    }

    /// The gather list sends exactly the bytes of the contiguous encoding; its frame runs
    /// point into the chunks' own storage (no copy); decoding the received bytes adopts them.
    func testGatherEncodingIsTheSameMessage() throws {
        let (samples, chunks) = try samples()
        let contiguous: [UInt8] = SampleWire.encode(samples)
        let gathered: FramedBytes = SampleWire.encode(samples)
        XCTAssertEqual(gathered.count, contiguous.count)
        var joined: [UInt8] = []
        var referenced = 0
        let storages = chunks.map { c in c.columns[0].withRawBytes { UInt(bitPattern: $0.baseAddress!)..<(UInt(bitPattern: $0.baseAddress!) + UInt($0.count)) } }
        gathered.forEachPart { p, n in
            joined += Array(UnsafeRawBufferPointer(start: p, count: n))
            if storages.contains(where: { $0.contains(UInt(bitPattern: p)) }) { referenced += n }
        }
        XCTAssertEqual(joined, contiguous)
        // Frames: (2 + 5 + 3) steps of 28224 bytes, all sent from chunk storage.
        XCTAssertEqual(referenced, 10 * 84 * 84 * 4)
        XCTAssertGreaterThan(gathered.partCount, 5)
        // Asking for contiguous bytes joins them (once).
        XCTAssertEqual(gathered.withUnsafeBytes { Array($0) }, contiguous)

        // Received bytes (one WireBuffer) are adopted, equal to the originals.
        let buffer = WireBuffer(capacity: contiguous.count)
        contiguous.withUnsafeBytes { buffer.base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        let received = FramedBytes(buffer: buffer, count: contiguous.count)
        let decoded = try SampleWire.decode(received, table: "t")
        XCTAssertEqual(decoded.map(\.info), samples.map(\.info))
        for (d, s) in zip(decoded, samples) {
            XCTAssertEqual(bytes(d.item.column(0)), bytes(s.item.column(0)))
            XCTAssertEqual(bytes(d.item.column(1)), bytes(s.item.column(1)))
            XCTAssertTrue(d.item.chunks[0].columns[0].storageBlock.isAdopted)
        }
        let copied = try SampleWire.decode(received, table: "t", adoptMessageBytes: false)
        XCTAssertFalse(copied[0].item.chunks[0].columns[0].storageBlock.isAdopted)
    }

    /// `InsertWire`: the gather list is SwiftProtobuf's encoding byte for byte (frames sent
    /// from the tensors' storage, which `Loom_Replay_TensorData(_:)` only views); decoding
    /// received bytes gives the same message, its frame data over the received buffer.
    func testInsertWireIsTheGeneratedEncoding() throws {
        let frame = try Tensor((0..<(2 * 84 * 84 * 4)).map { UInt8(truncatingIfNeeded: $0 &* 13) }, shape: [2, 84, 84, 4])
        let small = try Tensor([Int32(3), -4], shape: [2])
        var m = Loom_Replay_InsertRequest()
        for k in 1...3 {
            var c = Loom_Replay_ChunkData()
            c.key = UInt64(k)
            c.columns = [Loom_Replay_TensorData(frame), Loom_Replay_TensorData(small)]
            m.chunks.append(c)
            var item = Loom_Replay_ItemData()
            item.key = UInt64(100 + k)
            item.table = "t"
            item.priority = 0.5 * Double(k)
            item.chunkKeys = [UInt64(k)]
            item.length = 2
            m.items.append(item)
        }
        m.releaseChunkKeys = [1, 300]
        m.timeoutMs = 2500
        // The frame column views the tensor's storage; the small one is a copy.
        let framePointer = frame.withRawBytes { UInt(bitPattern: $0.baseAddress!) }
        XCTAssertEqual(m.chunks[0].columns[0].data.withUnsafeBytes { UInt(bitPattern: $0.baseAddress!) }, framePointer)

        let generated: [UInt8] = try m.serializedBytes()
        let gathered = try InsertWire.encodeGather(m)
        var joined: [UInt8] = []
        var fromTensor = 0
        gathered.forEachPart { p, n in
            joined += Array(UnsafeRawBufferPointer(start: p, count: n))
            if UInt(bitPattern: p) == framePointer { fromTensor += n }
        }
        XCTAssertEqual(joined, generated)
        XCTAssertEqual(fromTensor, 3 * 2 * 84 * 84 * 4, "every frame column sent from the tensor's storage")

        let buffer = WireBuffer(capacity: generated.count)
        generated.withUnsafeBytes { buffer.base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        let decoded = try InsertWire.decode(FramedBytes(buffer: buffer, count: generated.count))
        XCTAssertEqual(decoded, m)
        let range = UInt(bitPattern: buffer.base)..<(UInt(bitPattern: buffer.base) + UInt(generated.count))
        XCTAssertTrue(range.contains(decoded.chunks[1].columns[0].data.withUnsafeBytes { UInt(bitPattern: $0.baseAddress!) }),
                      "large column data refer to the received buffer")
        // The server's tensor for it adopts those bytes, equal to the original.
        let t = try decoded.chunks[2].columns[0].tensor("column")
        XCTAssertTrue(t.storageBlock.isAdopted)
        XCTAssertEqual(bytes(t), bytes(frame))
        // Malformed bytes are an error naming the message, not a crash.
        let cut = WireBuffer(capacity: 40)
        generated.withUnsafeBytes { cut.base.copyMemory(from: $0.baseAddress!, byteCount: 40) }
        XCTAssertThrowsError(try InsertWire.decode(FramedBytes(buffer: cut, count: 40))) { error in
            XCTAssertTrue("\(error)".contains("malformed"), "\(error)")
        }
    }

    /// `FramedBytes` as grpc's serializers use it: built from a sequence, from `repeating`,
    /// written through `withUnsafeMutableBytes` (in place when unshared, a copy when shared).
    func testFramedBytesValueSemantics() {
        var a = FramedBytes([1, 2, 3, 4] as [UInt8])
        XCTAssertEqual(a.count, 4)
        XCTAssertEqual(a.withUnsafeBytes { Array($0) }, [1, 2, 3, 4])
        let before = a.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
        a.withUnsafeMutableBytes { $0[0] = 9 }
        XCTAssertEqual(a.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) }, before, "unshared bytes are written in place")
        let b = a
        a.withUnsafeMutableBytes { $0[1] = 8 }
        XCTAssertEqual(a.withUnsafeBytes { Array($0) }, [9, 8, 3, 4])
        XCTAssertEqual(b.withUnsafeBytes { Array($0) }, [9, 2, 3, 4], "a copy is not changed by writes to the original")
        XCTAssertEqual(FramedBytes(repeating: 7, count: 3).withUnsafeBytes { Array($0) }, [7, 7, 7])
        XCTAssertEqual(FramedBytes(repeating: 0, count: 0).count, 0)
        // A sequence whose underestimatedCount is 0 still copies every element.
        let lazy = FramedBytes((0..<300).lazy.filter { _ in true }.map { UInt8(truncatingIfNeeded: $0) })
        XCTAssertEqual(lazy.withUnsafeBytes { Array($0) }, (0..<300).map { UInt8(truncatingIfNeeded: $0) })
    }

    /// Open, status and metadata payloads round-trip (string and binary values); truncated
    /// payloads and unknown frame kinds are errors, not crashes.
    func testFrameCodec() throws {
        var md = Metadata()
        md.addString("Bearer x", forKey: "authorization")
        md.addBinary([0, 255, 7], forKey: "blob-bin")
        md.addString("1S", forKey: "grpc-timeout")
        let open = FramedWire.openPayload(MethodDescriptor(fullyQualifiedService: "loom.replay.ReplayService", method: "Sample"), md)
        let (service, method, decoded) = try FramedWire.decodeOpen(open)
        XCTAssertEqual(service, "loom.replay.ReplayService")
        XCTAssertEqual(method, "Sample")
        XCTAssertEqual(decoded, md)
        let (status, trailers) = try FramedWire.decodeStatus(FramedWire.statusPayload(Status(code: .notFound, message: "no table 'x'"), md))
        XCTAssertEqual(status.code, .notFound)
        XCTAssertEqual(status.message, "no table 'x'")
        XCTAssertEqual(trailers, md)

        let truncated = open.withUnsafeBytes { FramedBytes(Array($0.prefix($0.count - 2))) }
        XCTAssertThrowsError(try FramedWire.decodeOpen(truncated))
        var header = [UInt8](repeating: 0, count: FramedWire.headerBytes)
        header[4] = 42
        XCTAssertThrowsError(try header.withUnsafeBytes { try FramedWire.readHeader($0.baseAddress!) }) { error in
            XCTAssertTrue("\(error)".contains("unknown frame kind 42"), "\(error)")
        }
        header[4] = FramedWire.FrameKind.message.rawValue
        header.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(1 << 40).littleEndian, toByteOffset: 8, as: UInt64.self) }
        XCTAssertThrowsError(try header.withUnsafeBytes { try FramedWire.readHeader($0.baseAddress!) }) { error in
            XCTAssertEqual((error as? RPCError)?.code, .resourceExhausted)
        }
    }

    /// A framed client fails at once with `unavailable` naming the address when nothing
    /// listens, and with a message about the preface when the port speaks HTTP/2.
    func testFramedClientErrors() async throws {
        let replay = try ReplayServer(tables: [try uniformTable("t")])
        let service = try await RunningService(replay: replay)
        let http2Port = service.port
        let wrongWire = try ReplayClient(port: http2Port, transport: .framed)
        let message = await assertRPCError(.unavailable) { _ = try await wrongWire.serverInfo() }
        XCTAssertTrue(message.contains("preface") || message.contains("HTTP/2"), message)
        await wrongWire.close()

        let framed = try ReplayClient(port: service.framedPort!, transport: .framed)
        let names = try await framed.serverInfo().map(\.name)
        XCTAssertEqual(names, ["t"])
        try await service.stop()
        // The server is gone: the next call fails (connection lost, then refused).
        let gone = await assertRPCError(.unavailable) { _ = try await framed.serverInfo() }
        XCTAssertTrue(gone.contains("127.0.0.1"), gone)
        await framed.close()

        let cert = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/test-cert.pem").path
        XCTAssertThrowsError(try ReplayClient(port: 1, tls: try ReplayClientTLS(trustRootsPath: cert), transport: .framed)) { error in
            XCTAssertTrue("\(error)".contains("TLS"), "\(error)")
        }
    }

    /// The call deadline travels as `grpc-timeout` metadata: a sample on an empty table
    /// fails with DEADLINE_EXCEEDED after about the deadline and the server's wait ends too;
    /// a sample stream stopped early by its consumer is cancelled on the server.
    func testDeadlineAndCancellationReachTheServer() async throws {
        let replay = try ReplayServer(tables: [try uniformTable("t")])
        let service = try await RunningService(replay: replay)
        let client = try ReplayClient(port: service.framedPort!, transport: .framed)
        let start = ContinuousClock.now
        let message = await assertRPCError(.deadlineExceeded) {
            _ = try await client.sample(table: "t", count: 1, deadline: .milliseconds(300))
        }
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(250))
        XCTAssertTrue(message.contains("deadline"), message)
        var waiting: Int64 = 1
        for _ in 0..<100 where waiting != 0 {
            try await Task.sleep(for: .milliseconds(20))
            waiting = try await client.serverInfo()[0].waitingSamples
        }
        XCTAssertEqual(waiting, 0)

        for k in 1...20 {
            try replay.insert(ReplayItem(key: UInt64(k), table: "t", priority: 1,
                                         chunks: [try Chunk(key: UInt64(k), columns: [try Tensor([Float(k)], shape: [1])])]))
        }
        // Ask for many, stop after the first batch: the call ends and the connection is
        // still usable.
        let batches = Locked(0)
        try await client.sample(table: "t", count: 100_000, batchSize: 10, timeout: .seconds(5)) { _ in
            batches.withLock { $0 += 1 }
            return false
        }
        XCTAssertEqual(batches.withLock { $0 }, 1)
        let again = try await client.sample(table: "t", count: 3, timeout: .seconds(5))
        XCTAssertEqual(again.count, 3)
        await client.close()
        try await service.stop()
    }

    /// Both transports return the same samples from one server, and a frame sampled over the
    /// framed transport is a tensor over the received buffer.
    func testFramedAndHTTP2AgreeOnFrames() async throws {
        let replay = try ReplayServer(tables: [TableConfig(name: "t", sampler: .fifo, remover: .fifo, maxSize: 100,
                                                           rateLimiter: try .minSize(1))])
        let service = try await RunningService(replay: replay)
        let http2 = try ReplayClient(port: service.port)
        let framed = try ReplayClient(port: service.framedPort!, transport: .framed)
        let writer = try TrajectoryWriter(client: framed, chunkLength: 2, maxSequenceLength: 3)
        var keys: [UInt64] = []
        for i in 0..<10 {
            let frame = try Tensor((0..<(84 * 84 * 4)).map { UInt8(truncatingIfNeeded: $0 &+ i) }, shape: [84, 84, 4])
            try writer.append([frame, try Tensor([Float(i)], shape: [1])])
            if i >= 2 { keys.append(try writer.createItem(table: "t", priority: 1, numSteps: 3)) }
        }
        _ = try await writer.flush(timeout: .seconds(10))
        XCTAssertEqual(replay.info()[0].size, 8)
        // FIFO with max-times-sampled unlimited: both see the first item first.
        let a = try await http2.sample(table: "t", count: 4, batchSize: 2, timeout: .seconds(5))
        let b = try await framed.sample(table: "t", count: 4, batchSize: 2, timeout: .seconds(5))
        XCTAssertEqual(a.map(\.info.key), b.map(\.info.key))
        for (x, y) in zip(a, b) {
            XCTAssertEqual(bytes(x.item.column(0)), bytes(y.item.column(0)))
            XCTAssertEqual(bytes(x.item.column(1)), bytes(y.item.column(1)))
            XCTAssertEqual(y.item.column(0).shape, [3, 84, 84, 4])
        }
        XCTAssertTrue(b[0].item.chunks[0].columns[0].storageBlock.isAdopted)
        XCTAssertEqual(b[0].info.key, keys[0])
        await http2.close()
        await framed.close()
        try await service.stop()
    }
}
