import Foundation
import GRPCCore
import ReplayClient
import ReplayService
import ReplayStorage
import TensorCore
import XCTest

final class TLSTests: XCTestCase {
    func serverTLS() throws -> ReplayServerTLS {
        try ReplayServerTLS(certificatePath: fixture("test-cert.pem"), keyPath: fixture("test-key.pem"))
    }

    /// A TLS server and a client trusting its certificate: insert and sample round trip,
    /// by IP address and by host name (both are in the certificate).
    func testTLSRoundTrip() async throws {
        let replay = try ReplayServer(tables: [try uniformTable("t")])
        let service = try await RunningService(replay: replay, token: "tok", tls: try serverTLS())
        for host in ["127.0.0.1", "localhost"] {
            let client = try service.client(token: "tok", tls: try ReplayClientTLS(trustRootsPath: fixture("test-cert.pem")), host: host)
            let writer = try TrajectoryWriter(client: client)
            try writer.append([try Tensor([Float(4.25)], shape: [1])])
            let key = try writer.createItem(table: "t", priority: 1, numSteps: 1)
            let inserted = try await writer.flush(timeout: .seconds(5))
            XCTAssertEqual(inserted, 1)
            let samples = try await client.sample(table: "t", count: 1, timeout: .seconds(5))
            XCTAssertTrue(try replay.table("t").contains(key))
            XCTAssertEqual(bytes(samples[0].item.column(0)).count, 4)
            try await client.mutatePriorities(table: "t", deletes: [key])
            await client.close()
        }
        try await service.stop()
    }

    /// A plaintext client against a TLS server fails at once with UNAVAILABLE naming the
    /// address and TLS; a client trusting another root fails too; a TLS client against a
    /// plaintext server fails the same clear way.
    func testMismatchedSecurityFailsClearly() async throws {
        let replay = try ReplayServer(tables: [try uniformTable("t")])
        let service = try await RunningService(replay: replay, tls: try serverTLS())
        let plain = try service.client()
        let message = await assertRPCError(.unavailable) { _ = try await plain.serverInfo() }
        XCTAssertTrue(message.contains("127.0.0.1:\(service.port) (plaintext)"), message)
        XCTAssertTrue(message.contains("TLS"), message)
        await plain.close()
        try await service.stop()

        let open = try await RunningService(replay: try ReplayServer(tables: [try uniformTable("t")]))
        let tlsClient = try open.client(tls: try ReplayClientTLS(trustRootsPath: fixture("test-cert.pem")))
        let m2 = await assertRPCError(.unavailable) { _ = try await tlsClient.serverInfo() }
        XCTAssertTrue(m2.contains("(TLS)"), m2)
        await tlsClient.close()
        try await open.stop()
    }

    /// Bad TLS files are refused with the path and what was expected.
    func testBadTLSFilesNamed() throws {
        XCTAssertThrowsError(try ReplayServerTLS(certificatePath: "/nonexistent.pem", keyPath: fixture("test-key.pem"))) { e in
            XCTAssertEqual("\(e)", "--tls-cert /nonexistent.pem: cannot read the file; expected a PEM certificate chain")
        }
        XCTAssertThrowsError(try ReplayServerTLS(certificatePath: fixture("test-cert.pem"), keyPath: fixture("tables.json"))) { e in
            XCTAssertTrue("\(e)".hasPrefix("--tls-key \(fixture("tables.json")): expected a PEM private key"), "\(e)")
        }
        XCTAssertThrowsError(try ReplayClientTLS(trustRootsPath: fixture("tables.yaml"))) { e in
            XCTAssertTrue("\(e)".hasPrefix("trust roots \(fixture("tables.yaml")): expected PEM certificates"), "\(e)")
        }
    }
}
