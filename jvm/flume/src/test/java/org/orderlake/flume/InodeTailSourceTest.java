package org.orderlake.flume;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.flume.Channel;
import org.apache.flume.Context;
import org.apache.flume.Event;
import org.apache.flume.PollableSource.Status;
import org.apache.flume.Transaction;
import org.apache.flume.channel.ChannelProcessor;
import org.apache.flume.channel.MemoryChannel;
import org.apache.flume.channel.ReplicatingChannelSelector;
import org.apache.flume.conf.Configurables;
import org.apache.flume.lifecycle.LifecycleState;
import org.junit.After;
import org.junit.Before;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/** The source on real files, with Flume's own memory channel behind it. */
public class InodeTailSourceTest {
  @Rule public TemporaryFolder folder = new TemporaryFolder();

  private Path spool;
  private Path positions;
  private MemoryChannel channel;
  private final List<InodeTailSource> started = new ArrayList<>();

  @Before
  public void setUp() throws IOException {
    spool = folder.newFolder("spool").toPath();
    positions = folder.getRoot().toPath().resolve("state/taildir-position.json");
    channel = channel(1000);
  }

  @After
  public void tearDown() {
    for (InodeTailSource source : started) {
      if (source.getLifecycleState() == LifecycleState.START) {
        source.stop();
      }
    }
  }

  private static MemoryChannel channel(int capacity) {
    MemoryChannel ch = new MemoryChannel();
    ch.setName("ch");
    Configurables.configure(
        ch,
        new Context(
            Map.of("capacity", Integer.toString(capacity), "transactionCapacity",
                Integer.toString(capacity), "keep-alive", "0"))); // take and put never wait
    ch.start();
    return ch;
  }

  private InodeTailSource source(int batchSize) {
    InodeTailSource source = new InodeTailSource();
    source.setName("tail");
    Map<String, String> conf = new HashMap<>();
    conf.put("positionFile", positions.toString());
    conf.put("filegroups", "actions");
    conf.put("filegroups.actions", spool + "/actions\\.log(\\.[1-9][0-9]*)?");
    conf.put("headers.actions.topic", "tmall.user_actions");
    conf.put("fileHeader", "true");
    conf.put("batchSize", Integer.toString(batchSize));
    conf.put("writePosInterval", "100000"); // saved on stop only: the tests decide when
    Configurables.configure(source, new Context(conf));
    ReplicatingChannelSelector selector = new ReplicatingChannelSelector();
    selector.setChannels(List.<Channel>of(channel));
    source.setChannelProcessor(new ChannelProcessor(selector));
    source.start();
    started.add(source);
    return source;
  }

  private void append(String name, String... lines) throws IOException {
    StringBuilder text = new StringBuilder();
    for (String line : lines) {
      text.append(line).append('\n');
    }
    Files.writeString(spool.resolve(name), text, StandardCharsets.UTF_8,
        StandardOpenOption.CREATE, StandardOpenOption.APPEND);
  }

  private void rename(String from, String to) throws IOException {
    Files.move(spool.resolve(from), spool.resolve(to));
  }

  /** Bodies of every event in the channel, taken out of it. */
  private List<String> drain() {
    List<String> bodies = new ArrayList<>();
    Transaction tx = channel.getTransaction();
    tx.begin();
    for (Event e = channel.take(); e != null; e = channel.take()) {
      bodies.add(new String(e.getBody(), StandardCharsets.UTF_8));
    }
    tx.commit();
    tx.close();
    return bodies;
  }

  private static void processAll(InodeTailSource source) throws Exception {
    while (source.process() == Status.READY) {
      // until nothing is left to read
    }
  }

  @Test
  public void aRenamedFileIsReadOnFromItsPositionNotAgain() throws Exception {
    append("actions.log", "a1", "a2", "a3");
    InodeTailSource source = source(2);
    processAll(source);
    assertEquals(List.of("a1", "a2", "a3"), drain());

    rename("actions.log", "actions.log.1");
    append("actions.log.1", "a4"); // its writer still held it open
    append("actions.log", "b1", "b2");
    processAll(source);
    List<String> sent = drain();
    sent.sort(null);
    assertEquals(List.of("a4", "b1", "b2"), sent);
  }

  @Test
  public void aRenameWhileStoppedKeepsThePositionAcrossARestart() throws Exception {
    append("actions.log", "a1", "a2");
    InodeTailSource first = source(100);
    processAll(first);
    assertEquals(List.of("a1", "a2"), drain());
    first.stop();

    append("actions.log", "a3");
    rename("actions.log", "actions.log.1");
    append("actions.log", "b1");
    rename("actions.log", "actions.log.2");
    append("actions.log", "c1");
    InodeTailSource second = source(100);
    processAll(second);
    List<String> sent = drain();
    sent.sort(null);
    assertEquals(List.of("a3", "b1", "c1"), sent);
  }

  @Test
  public void eventsCarryTheGroupsHeadersAndTheFileTheyCameFrom() throws Exception {
    append("actions.log", "a1");
    InodeTailSource source = source(10);
    processAll(source);
    Transaction tx = channel.getTransaction();
    tx.begin();
    Event event = channel.take();
    tx.commit();
    tx.close();
    assertEquals("tmall.user_actions", event.getHeaders().get("topic"));
    assertEquals(spool.resolve("actions.log").toString(), event.getHeaders().get("file"));
  }

  @Test
  public void aLineWithoutItsNewlineWaitsUntilItIsComplete() throws Exception {
    Files.writeString(spool.resolve("actions.log"), "a1\r\npart");
    InodeTailSource source = source(10);
    processAll(source);
    assertEquals(List.of("a1"), drain());
    Files.writeString(spool.resolve("actions.log"), "ial\n", StandardOpenOption.APPEND);
    processAll(source);
    assertEquals(List.of("partial"), drain());
  }

  @Test
  public void anInodeWithOtherFirstBytesIsANewFileReadFromItsStart() throws Exception {
    append("actions.log", "a1", "a2");
    InodeTailSource first = source(10);
    processAll(first);
    drain();
    first.stop();
    String saved = Files.readString(positions);
    assertTrue(saved, saved.contains("\"head\""));
    // the same inode now holds other bytes (as a file created after the old one's deletion)
    Files.writeString(spool.resolve("actions.log"), "z1\nz2\nz3\n");
    InodeTailSource second = source(10);
    processAll(second);
    assertEquals(List.of("z1", "z2", "z3"), drain());
  }

  @Test
  public void aTruncatedFileIsReadAgainFromItsStart() throws Exception {
    append("actions.log", "a1", "a2");
    InodeTailSource source = source(10);
    processAll(source);
    drain();
    Files.writeString(spool.resolve("actions.log"), "t\n");
    processAll(source);
    assertEquals(List.of("t"), drain());
  }

  @Test
  public void aFullChannelKeepsThePositionUntilTheBatchIsIn() throws Exception {
    channel = channel(2);
    append("actions.log", "a1", "a2", "a3");
    InodeTailSource source = source(3);
    assertEquals(Status.BACKOFF, source.process()); // 3 lines do not fit in 2
    assertEquals(List.of(), drain());
    source.stop();
    channel = channel(10);
    InodeTailSource again = source(3);
    processAll(again);
    assertEquals(List.of("a1", "a2", "a3"), drain());
  }

  @Test
  public void aPositionFileItCannotLoadStopsItFromStartingAndIsLeftAsItWas() throws Exception {
    Files.createDirectories(positions.getParent());
    String damaged = "[{\"inode\": 1, \"position\": 5}]";
    Files.writeString(positions, damaged);
    append("actions.log", "a1");
    InodeTailSource source = source(10);
    assertNotEquals(LifecycleState.START, source.getLifecycleState());
    source.stop();
    assertEquals(damaged, Files.readString(positions));
    assertEquals(List.of(), drain());
  }

  @Test
  public void positionsOfFilesGoneSinceAreDropped() throws Exception {
    Files.createDirectories(positions.getParent());
    Files.writeString(positions, "[{\"inode\": 999999999, \"pos\": 5, \"file\": \"/gone\"}]");
    append("actions.log", "a1");
    InodeTailSource source = source(10);
    processAll(source);
    assertEquals(List.of("a1"), drain());
    source.stop();
    String saved = Files.readString(positions);
    assertTrue(saved, !saved.contains("999999999") && saved.contains("actions.log"));
  }
}
