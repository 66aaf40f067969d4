package sg.peers;

import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.concurrent.atomic.AtomicLong;

/**
 * What the bench measures, inside the JVM, as bench/peers/measure.py does
 * from outside for spendguard: from the first input record to the last
 * addition to the window state, the wall time and the process's CPU time
 * (all threads: tasks, GC, JIT, clients), and peak RSS. Sampled every
 * 50 ms; the end is the whole input added, or no addition for STALL_MS
 * (longer than the pause of a rebalance; a
 * peer that drops late records never gets there: its count says so).
 */
public final class Meter {
    private static final long STALL_MS = 30000;
    private static final AtomicLong added = new AtomicLong();
    private static volatile long t0, cpu0;
    private static long target = Long.MAX_VALUE;

    private static long cpuNs() {
        return ((com.sun.management.OperatingSystemMXBean) ManagementFactory
                .getOperatingSystemMXBean()).getProcessCpuTime();
    }

    /** events: input events; each adds to two scopes. */
    public static void expect(long events) {
        target = 2 * events;
    }

    /** At every input record: the first one starts the clock. */
    public static void seen() {
        if (t0 == 0) {
            synchronized (Meter.class) {
                if (t0 == 0) {
                    cpu0 = cpuNs();
                    t0 = System.nanoTime();
                }
            }
        }
    }

    /** At every addition to a window. */
    public static void added() {
        added.incrementAndGet();
    }

    /** Waits for the end (or the timeout: null) and returns the line. */
    public static String await(long timeoutMs) throws InterruptedException {
        long end = System.currentTimeMillis() + timeoutMs;
        long last = -1, lastNs = 0, lastCpu = 0;
        while (System.currentTimeMillis() < end) {
            Thread.sleep(50);
            long n = added.get(), now = System.nanoTime();
            if (n != last) {
                last = n;
                lastNs = now;
                lastCpu = cpuNs();
            }
            if (n > 0 && (n >= target || now - lastNs > STALL_MS * 1000000L)) {
                double s = (lastNs - t0) / 1e9, cpu = (lastCpu - cpu0) / 1e9;
                long ev = n / 2;
                return String.format("events=%d seconds=%.3f eps=%.0f cpu_s=%.2f "
                        + "peak_rss_kb=%d", ev, s, ev / s, cpu, peakRssKb());
            }
        }
        return null;
    }

    static long peakRssKb() {
        try {
            for (String l : Files.readAllLines(Paths.get("/proc/self/status")))
                if (l.startsWith("VmHWM:"))
                    return Long.parseLong(l.replaceAll("[^0-9]", ""));
        } catch (Exception e) {
            // not Linux: no figure
        }
        return -1;
    }
}
