//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Testing

extension EndToEnd {
    /// The release archive (scripts/release) and the buildpacks in buildpack/, run as Heroku and a CNB lifecycle run
    /// them: the archive served from a file URL, the example app built into a fresh directory, then run.
    struct BuildpackTests {
        /// The archive scripts/release writes, built once for every test here.
        struct Release {
            let directory: URL
            let name: String
            var archive: URL { self.directory.appendingPathComponent(self.name + ".tar.gz") }
            var url: String { self.archive.absoluteString }
        }

        static let release: Result<Release, TestFailure> = {
            let directory = TestPaths.temporaryDirectory().appendingPathComponent("dist")
            let (status, output) = runProcess(TestPaths.packageRoot.appendingPathComponent("scripts/release").path, ["--output", directory.path])
            guard status == 0 else { return .failure(TestFailure("scripts/release failed (\(status)):\n\(output)")) }
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
            guard let archive = names.first(where: { $0.hasSuffix(".tar.gz") }) else {
                return .failure(TestFailure("scripts/release wrote no archive:\n\(output)"))
            }
            return .success(Release(directory: directory, name: String(archive.dropLast(".tar.gz".count))))
        }()

        static var version: String {
            let source = (try? String(contentsOf: TestPaths.packageRoot.appendingPathComponent("Sources/SidestatSupport/Version.swift"), encoding: .utf8)) ?? ""
            return source.split(separator: "\"").dropFirst().first.map(String.init) ?? "?"
        }

        static let buildpack = TestPaths.packageRoot.appendingPathComponent("buildpack")

        /// A fresh copy of Examples/heroku-flask, as Heroku's BUILD_DIR (or a CNB app directory) would hold it.
        static func exampleApp() throws -> URL {
            let app = TestPaths.temporaryDirectory().appendingPathComponent("app")
            try FileManager.default.copyItem(at: TestPaths.packageRoot.appendingPathComponent("Examples/heroku-flask"), to: app)
            try? FileManager.default.removeItem(at: app.appendingPathComponent(".venv"))
            return app
        }

        @Test("scripts/release: the archive holds exactly the binary, LICENSE and README; its checksum; it runs without Swift")
        func releaseArchive() throws {
            let release = try Self.release.get()
            #expect(release.name == "sidestat-\(Self.version)-linux-\(runProcess("/usr/bin/uname", ["-m"]).output.trimmingCharacters(in: .whitespacesAndNewlines))")
            let listing = runProcess("/usr/bin/tar", ["-tzf", release.archive.path]).output.split(separator: "\n").map(String.init)
            #expect(listing.sorted() == ["\(release.name)/", "\(release.name)/LICENSE", "\(release.name)/README", "\(release.name)/sidestat"])
            let check = runProcess("/usr/bin/sha256sum", ["-c", release.name + ".tar.gz.sha256"], in: release.directory)
            #expect(check.status == 0 && check.output.contains("OK"), "\(check.output)")

            let unpacked = TestPaths.temporaryDirectory()
            #expect(runProcess("/usr/bin/tar", ["-xzf", release.archive.path, "-C", unpacked.path]).status == 0)
            let binary = unpacked.appendingPathComponent("\(release.name)/sidestat").path
            let ldd = runProcess("/usr/bin/ldd", [binary]).output
            #expect(!ldd.contains("swift") && !ldd.contains("not found"), "\(ldd)")
            let libraries = Set(
                ldd.split(separator: "\n").compactMap { line in
                    line.split(whereSeparator: \.isWhitespace).first.map { String($0.split(separator: "/").last!.split(separator: ".so").first!) }
                })
            // glibc's own, libstdc++ and libgcc_s: what the README promises (libcurl is loaded only when first used).
            let documented: Set<String> = ["linux-vdso", "libc", "libm", "libstdc++", "libgcc_s", "ld-linux-x86-64", "ld-linux-aarch64", "libpthread", "libdl", "librt"]
            #expect(libraries.isSubset(of: documented), "\(libraries.subtracting(documented))")
            // The toolchain hidden (/opt/swift emptied in a private mount namespace) and a bare environment.
            let hidden = runProcess(
                "/usr/bin/unshare", ["--mount", "sh", "-c", "mount -t tmpfs none /opt/swift && exec env -i PATH=/usr/bin:/bin \"$0\" --version", binary])
            let bare = hidden.status == 0 ? hidden : runProcess("/usr/bin/env", ["-i", "PATH=/usr/bin:/bin", binary, "--version"])
            #expect(bare.status == 0 && bare.output.contains(Self.version), "\(hidden.output)\n\(bare.output)")
            let readme = try String(contentsOf: unpacked.appendingPathComponent("\(release.name)/README"), encoding: .utf8)
            #expect(readme.contains("Sidestat \(Self.version)") && readme.contains("glibc"), "\(readme)")
        }

        @Test("the buildpacks pin the release whose version sidestat --version prints")
        func pinnedVersion() throws {
            let library = try String(contentsOf: Self.buildpack.appendingPathComponent("lib/sidestat.sh"), encoding: .utf8)
            #expect(library.contains("SIDESTAT_DEFAULT_VERSION=\"\(Self.version)\""))
            let toml = try String(contentsOf: Self.buildpack.appendingPathComponent("buildpack.toml"), encoding: .utf8)
            #expect(toml.contains("version = \"\(Self.version)\""))
            let (status, output) = try SidestatProcess.run(["--version"])
            #expect(status == 0 && output.contains(Self.version))
        }

        @Test("classic buildpack as Heroku runs it: detect, compile, a cached second compile, then the Procfile's web line serves and counts")
        func classic() throws {
            let release = try Self.release.get()
            // The archive is served from a copy, so that taking it away proves the second compile downloads nothing.
            let served = TestPaths.temporaryDirectory()
            for file in [release.name + ".tar.gz", release.name + ".tar.gz.sha256"] {
                try FileManager.default.copyItem(at: release.directory.appendingPathComponent(file), to: served.appendingPathComponent(file))
            }
            let url = served.appendingPathComponent(release.name + ".tar.gz").absoluteString
            let cache = TestPaths.temporaryDirectory().appendingPathComponent("cache")
            let environment = TestPaths.temporaryDirectory().appendingPathComponent("env")
            try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(at: environment, withIntermediateDirectories: true)
            try url.write(to: environment.appendingPathComponent("SIDESTAT_DOWNLOAD_URL"), atomically: true, encoding: .utf8)

            let app = try Self.exampleApp()
            let detect = runProcess(Self.buildpack.appendingPathComponent("bin/detect").path, [app.path])
            #expect(detect.status == 0 && detect.output == "Sidestat\n", "\(detect.output)")
            let empty = TestPaths.temporaryDirectory()
            #expect(runProcess(Self.buildpack.appendingPathComponent("bin/detect").path, [empty.path]).status == 1)

            let compile = Self.buildpack.appendingPathComponent("bin/compile").path
            let first = runProcess(compile, [app.path, cache.path, environment.path])
            #expect(first.status == 0, "\(first.output)")
            #expect(first.output.contains("-----> Installing Sidestat \(Self.version)") && first.output.contains("Downloading \(url)"), "\(first.output)")
            #expect(FileManager.default.isExecutableFile(atPath: app.appendingPathComponent(".sidestat/bin/sidestat").path))
            let profile = try String(contentsOf: app.appendingPathComponent(".profile.d/sidestat.sh"), encoding: .utf8)
            #expect(profile.contains("$HOME/.sidestat/bin"))

            // A second build with the same cache: the archive is gone from its URL, and nothing is downloaded.
            try FileManager.default.removeItem(at: served.appendingPathComponent(release.name + ".tar.gz"))
            let secondApp = try Self.exampleApp()
            let second = runProcess(compile, [secondApp.path, cache.path, environment.path])
            #expect(second.status == 0, "\(second.output)")
            #expect(second.output.contains("Using the cached Sidestat") && !second.output.contains("Downloading"), "\(second.output)")

            // The dyno: HOME is the slug, .profile.d sourced, PORT set, the Procfile's web line run as is.
            let procfile = try String(contentsOf: secondApp.appendingPathComponent("Procfile"), encoding: .utf8)
            let web = try #require(procfile.split(separator: "\n").first { $0.hasPrefix("web:") }).dropFirst(4)
                .trimmingCharacters(in: .whitespaces)
            #expect(web == "sidestat start -f Procfile.chain --config statsd-config.js")
            try self.serveAndCount(app: secondApp, web: web, binary: secondApp.appendingPathComponent(".sidestat/bin/sidestat").path)
        }

        /// Runs `web` in `app` as a dyno would and checks that requests arrive in Graphite as Homepage hits.
        func serveAndCount(app: URL, web: String, profile: String = ". .profile.d/sidestat.sh", binary: String) throws {
            let venv = TestPaths.packageRoot.appendingPathComponent(".build/venvs/heroku-flask/bin")
            guard FileManager.default.isExecutableFile(atPath: venv.appendingPathComponent("gunicorn").path) else {
                throw TestFailure("gunicorn is missing: run scripts/test, which installs Examples/heroku-flask/requirements.txt")
            }
            let configFile = app.appendingPathComponent("statsd-config.js")
            let config = try String(contentsOf: configFile, encoding: .utf8)
                .replacingOccurrences(of: "port: 8125,", with: "port: \(freePort()), mgmt_port: \(freePort()),")
                .replacingOccurrences(of: "flushInterval: 10000", with: "flushInterval: 60000")
            try config.write(to: configFile, atomically: true, encoding: .utf8)
            let sink = try LineSink()
            let webPort = freePort()
            var environment = ProcessInfo.processInfo.environment
            environment["HOME"] = app.path
            // The system's PATH and the app's Python (the Python buildpack's part): not the test build's sidestat.
            environment["PATH"] = venv.path + ":/usr/local/bin:/usr/bin:/bin"
            environment["PORT"] = String(webPort)
            environment["GRAPHITE_HOST"] = "127.0.0.1"
            environment["GRAPHITE_PORT"] = String(sink.port)
            environment["DYNO"] = "web.1"
            let dyno = try SidestatProcess(
                arguments: ["-c", "\(profile) && command -v sidestat && exec \(web)"], environment: environment,
                waitForUp: true, workingDirectory: app, executable: "/bin/bash")
            #expect(waitUntil(timeout: 30) { (try? Send.connect(port: webPort)).map { close($0) } != nil })
            for _ in 0..<3 {
                let response = try HTTP.request("GET", port: webPort, path: "/", headers: ["Connection: close"])
                #expect(response.status == 200 && response.body == "Hello World!")
            }
            #expect(dyno.terminate(timeout: 30) == 143, "\(dyno.output)")
            #expect(dyno.output.hasPrefix(binary + "\n"), "the buildpack's sidestat ran: \(dyno.output)")
            let hits = sink.values("stats_counts.web_1.Homepage_hits").compactMap(Int.init).reduce(0, +)
            #expect(hits == 3, "\(dyno.output)")
        }

        @Test("classic buildpack: a wrong checksum or a failed download fails the build with one clear line")
        func classicFailures() throws {
            let release = try Self.release.get()
            let compile = Self.buildpack.appendingPathComponent("bin/compile").path
            for (name, value, message) in [
                ("SIDESTAT_SHA256", String(repeating: "0", count: 64), "checksum mismatch for \(release.url): expected \(String(repeating: "0", count: 64)), got "),
                ("SIDESTAT_DOWNLOAD_URL", release.url + ".missing", "could not download the checksum \(release.url).missing.sha256"),
            ] {
                let environment = TestPaths.temporaryDirectory()
                try value.write(to: environment.appendingPathComponent(name), atomically: true, encoding: .utf8)
                if name != "SIDESTAT_DOWNLOAD_URL" {
                    try release.url.write(to: environment.appendingPathComponent("SIDESTAT_DOWNLOAD_URL"), atomically: true, encoding: .utf8)
                }
                let app = try Self.exampleApp()
                let result = runProcess(compile, [app.path, TestPaths.temporaryDirectory().path, environment.path])
                #expect(result.status == 1, "\(result.output)")
                let errors = result.output.split(separator: "\n").filter { $0.hasPrefix(" !") }
                #expect(errors.count == 1 && errors[0].hasPrefix(" !     Sidestat: \(message)"), "\(result.output)")
                #expect(!FileManager.default.fileExists(atPath: app.appendingPathComponent(".sidestat/bin/sidestat").path))
            }
        }

        @Test("Cloud Native Buildpack: detect writes the plan; build makes a launch layer and reuses its cache on the next build")
        func cloudNative() throws {
            let release = try Self.release.get()
            let app = try Self.exampleApp()
            let platform = TestPaths.temporaryDirectory().appendingPathComponent("platform")
            try FileManager.default.createDirectory(at: platform.appendingPathComponent("env"), withIntermediateDirectories: true)
            let served = TestPaths.temporaryDirectory()
            for file in [release.name + ".tar.gz", release.name + ".tar.gz.sha256"] {
                try FileManager.default.copyItem(at: release.directory.appendingPathComponent(file), to: served.appendingPathComponent(file))
            }
            let url = served.appendingPathComponent(release.name + ".tar.gz").absoluteString
            try url.write(to: platform.appendingPathComponent("env/SIDESTAT_DOWNLOAD_URL"), atomically: true, encoding: .utf8)

            // detect: the lifecycle's plan path; 0 and a plan for the app, 100 for an app without Sidestat's files.
            let plan = TestPaths.temporaryDirectory().appendingPathComponent("plan.toml")
            let detectEnvironment = ["CNB_PLATFORM_DIR": platform.path, "CNB_BUILD_PLAN_PATH": plan.path]
            let detect = runProcess(Self.buildpack.appendingPathComponent("bin/detect").path, [], environment: detectEnvironment, in: app)
            #expect(detect.status == 0, "\(detect.output)")
            let planText = try String(contentsOf: plan, encoding: .utf8)
            #expect(planText.contains("[[provides]]\nname = \"sidestat\"") && planText.contains("[[requires]]\nname = \"sidestat\""))
            let other = runProcess(
                Self.buildpack.appendingPathComponent("bin/detect").path, [], environment: detectEnvironment, in: TestPaths.temporaryDirectory())
            #expect(other.status == 100)

            // build: a layers directory, the platform directory and the buildpack plan.
            let layers = TestPaths.temporaryDirectory().appendingPathComponent("layers")
            try FileManager.default.createDirectory(at: layers, withIntermediateDirectories: true)
            let bpPlan = TestPaths.temporaryDirectory().appendingPathComponent("bp-plan.toml")
            try "[[entries]]\nname = \"sidestat\"\n".write(to: bpPlan, atomically: true, encoding: .utf8)
            let buildEnvironment = ["CNB_LAYERS_DIR": layers.path, "CNB_PLATFORM_DIR": platform.path, "CNB_BP_PLAN_PATH": bpPlan.path]
            let build = Self.buildpack.appendingPathComponent("bin/build").path
            let first = runProcess(build, [], environment: buildEnvironment, in: app)
            #expect(first.status == 0 && first.output.contains("Downloading \(url)"), "\(first.output)")
            let sha256 = try String(contentsOf: served.appendingPathComponent(release.name + ".tar.gz.sha256"), encoding: .utf8)
                .split(separator: " ").first.map(String.init) ?? "?"
            let launch = try String(contentsOf: layers.appendingPathComponent("sidestat.toml"), encoding: .utf8)
            #expect(launch == "[types]\nlaunch = true\ncache = true\n\n[metadata]\nversion = \"\(Self.version)\"\nsha256 = \"\(sha256)\"\n")
            let cacheLayer = try String(contentsOf: layers.appendingPathComponent("archive.toml"), encoding: .utf8)
            #expect(cacheLayer == "[types]\ncache = true\n\n[metadata]\nversion = \"\(Self.version)\"\nurl = \"\(url)\"\nsha256 = \"\(sha256)\"\n")
            let binary = layers.appendingPathComponent("sidestat/bin/sidestat").path
            #expect(runProcess(binary, ["--version"]).output.contains(Self.version))

            // The next build: the lifecycle restores the cached layers; the archive is gone from its URL.
            try FileManager.default.removeItem(at: served.appendingPathComponent(release.name + ".tar.gz"))
            let second = runProcess(build, [], environment: buildEnvironment, in: app)
            #expect(second.status == 0, "\(second.output)")
            #expect(second.output.contains("Using the cached Sidestat") && second.output.contains("Reusing the sidestat layer"), "\(second.output)")
            #expect(!second.output.contains("Downloading"))

            // At launch the lifecycle puts each launch layer's bin on the PATH: the Procfile's web line runs.
            let procfile = try String(contentsOf: app.appendingPathComponent("Procfile"), encoding: .utf8)
            let web = try #require(procfile.split(separator: "\n").first { $0.hasPrefix("web:") }).dropFirst(4)
                .trimmingCharacters(in: .whitespaces)
            try self.serveAndCount(
                app: app, web: web, profile: "export PATH=\"\(layers.path)/sidestat/bin:$PATH\"", binary: binary)
        }
    }
}
