package org.orderlake.flume;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.util.LinkedList;
import java.util.Deque;
import java.util.List;
import java.util.Map;
import org.apache.flume.Context;
import org.apache.flume.EventDeliveryException;
import org.apache.flume.Sink.Status;
import org.apache.flume.conf.ConfigurationException;
import org.apache.flume.sink.AbstractSink;
import org.junit.Test;

public class ShortBackoffSinkProcessorTest {
  /** A sink that answers process() from a script: a Status, or null for a delivery error. */
  private static final class ScriptedSink extends AbstractSink {
    final Deque<Status> script = new LinkedList<>(); // takes null

    @Override
    public Status process() throws EventDeliveryException {
      Status next = script.removeFirst();
      if (next == null) {
        throw new EventDeliveryException("Kafka unreachable");
      }
      return next;
    }
  }

  private static ShortBackoffSinkProcessor processor(ScriptedSink sink, long inc, long max) {
    ShortBackoffSinkProcessor p = new ShortBackoffSinkProcessor();
    p.setSinks(List.of(sink));
    p.configure(
        new Context(
            Map.of(
                "backoffSleepIncrement", Long.toString(inc), "maxBackoffSleep", Long.toString(max))));
    return p;
  }

  @Test
  public void backoffGrowsByTheIncrementUpToTheMaximum() {
    ShortBackoffSinkProcessor p = processor(new ScriptedSink(), 50, 120);
    assertEquals(50, p.backoffMs(1));
    assertEquals(100, p.backoffMs(2));
    assertEquals(120, p.backoffMs(3));
    assertEquals(120, p.backoffMs(1000));
  }

  @Test
  public void sleepsOnAnEmptyChannelItselfAndReportsReady() throws Exception {
    ScriptedSink sink = new ScriptedSink();
    ShortBackoffSinkProcessor p = processor(sink, 20, 40);
    sink.script.add(Status.BACKOFF);
    long started = System.nanoTime();
    // READY: the SinkRunner must not add its own 1-5 s sleep
    assertEquals(Status.READY, p.process());
    assertTrue((System.nanoTime() - started) / 1_000_000 >= 20);
    assertEquals(1, p.emptyPollsInARow());
  }

  @Test
  public void aDeliveredBatchResetsTheBackoff() throws Exception {
    ScriptedSink sink = new ScriptedSink();
    ShortBackoffSinkProcessor p = processor(sink, 1, 5);
    sink.script.addAll(List.of(Status.BACKOFF, Status.BACKOFF, Status.READY, Status.BACKOFF));
    p.process();
    p.process();
    assertEquals(2, p.emptyPollsInARow());
    assertEquals(Status.READY, p.process());
    assertEquals(0, p.emptyPollsInARow());
    p.process();
    assertEquals(1, p.emptyPollsInARow());
  }

  @Test
  public void deliveryErrorsReachTheRunner() {
    ScriptedSink sink = new ScriptedSink();
    ShortBackoffSinkProcessor p = processor(sink, 1, 5);
    sink.script.add(null);
    assertThrows(EventDeliveryException.class, p::process);
  }

  @Test
  public void anInterruptedBackoffReportsBackoffAndKeepsTheInterrupt() throws Exception {
    ScriptedSink sink = new ScriptedSink();
    ShortBackoffSinkProcessor p = processor(sink, 10_000, 10_000);
    sink.script.add(Status.BACKOFF);
    Thread.currentThread().interrupt();
    try {
      assertEquals(Status.BACKOFF, p.process());
      assertTrue(Thread.currentThread().isInterrupted());
    } finally {
      Thread.interrupted(); // clear it for the next test
    }
  }

  @Test
  public void refusesABackoffThatCannotGrow() {
    assertThrows(ConfigurationException.class, () -> processor(new ScriptedSink(), 0, 500));
    assertThrows(ConfigurationException.class, () -> processor(new ScriptedSink(), 600, 500));
  }
}
