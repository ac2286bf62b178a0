package org.orderlake.flume;

import com.google.gson.Gson;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;
import java.util.zip.CRC32;
import org.apache.flume.ChannelException;
import org.apache.flume.Context;
import org.apache.flume.Event;
import org.apache.flume.FlumeException;
import org.apache.flume.PollableSource.Status;
import org.apache.flume.conf.BatchSizeSupported;
import org.apache.flume.conf.ConfigurationException;
import org.apache.flume.event.EventBuilder;
import org.apache.flume.instrumentation.SourceCounter;
import org.apache.flume.source.AbstractPollableSource;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Tails every generation of the spool's log files, one event per line, knowing each file by its
 * inode alone: a file renamed by a rotation is read on from where it was.
 *
 * <p>Flume 1.11's TAILDIR source knows a file by (inode, path), so every rotation by rename made it
 * read the renamed file again from its start, while running and after a restart: each rotated line
 * went through Kafka, bronze and the speed layer's de-duplication twice. This source keeps
 * TAILDIR's configuration names, position file and reliability (a position advances only once its
 * batch is in the channel; positions are saved every {@code writePosInterval} ms, so a crash
 * re-sends at most that much, never skips), and follows a file across renames.
 *
 * <p>A file is taken for the one read before only when its first bytes are the same (their CRC-32
 * is kept as {@code head} beside the position): an inode the file system gave to a new file after
 * the old one was deleted is read from its start. A file shorter than its position was truncated
 * and is read again from its start. Lines end with {@code \n} (a {@code \r} before it is dropped);
 * a last line without its newline waits until it is complete. A position file this source cannot
 * load stops it from starting (as TAILDIR's does), so the edge's watchdog moves it aside with its
 * reason instead of files being read again silently.
 *
 * <pre>
 * a.sources.s.type = org.orderlake.flume.InodeTailSource
 * a.sources.s.positionFile = /state/taildir-position.json
 * a.sources.s.filegroups = actions
 * a.sources.s.filegroups.actions = /spool/actions\\.log(\\.[1-9][0-9]*)?
 * a.sources.s.headers.actions.topic = tmall.user_actions
 * a.sources.s.fileHeader = true
 * a.sources.s.fileHeaderKey = file
 * a.sources.s.batchSize = 2000
 * a.sources.s.writePosInterval = 1000
 * </pre>
 */
public final class InodeTailSource extends AbstractPollableSource implements BatchSizeSupported {
  private static final Logger LOG = LoggerFactory.getLogger(InodeTailSource.class);
  static final int HEAD_BYTES = 256;
  private static final int CHUNK_BYTES = 64 * 1024;
  private static final int FORGET_AFTER = 3; // scans in a row without a file: it is gone
  // headOf's answer when a name no longer points to the inode: compared by identity
  private static final String MOVED = new String("moved");

  /** A file group: a directory and the pattern its files' names match. */
  record Group(String name, Path dir, Pattern fileName, Map<String, String> headers) {}

  /** A file being tailed: where it is now and how far it has been read. */
  static final class Tailed {
    final long inode;
    final Group group;
    Path path;
    long pos;
    String head; // CRC-32 of the first min(pos, HEAD_BYTES) bytes; null before any is read
    int missed; // scans in a row that did not list it

    Tailed(long inode, Group group, Path path, long pos, String head) {
      this.inode = inode;
      this.group = group;
      this.path = path;
      this.pos = pos;
      this.head = head;
    }
  }

  /** One entry of the position file. */
  record Saved(long inode, long pos, String file, String head) {}

  private final List<Group> groups = new ArrayList<>();
  private Path positionFile;
  private int batchSize;
  private long writePosIntervalMs;
  private String fileHeaderKey; // null: no file header

  private final Map<Long, Tailed> tailed = new HashMap<>();
  private Map<Long, Saved> saved = new HashMap<>(); // loaded, not yet matched to a file
  private long positionsWrittenAt;
  private boolean loaded; // false: never overwrite a position file this source could not load
  private SourceCounter counter;

  @Override
  protected void doConfigure(Context context) {
    String file = context.getString("positionFile");
    String names = context.getString("filegroups");
    if (file == null || names == null || names.isBlank()) {
      throw new ConfigurationException("InodeTailSource needs positionFile and filegroups");
    }
    positionFile = Paths.get(file);
    groups.clear();
    for (String name : names.trim().split("\\s+")) {
      String pattern = context.getString("filegroups." + name);
      if (pattern == null) {
        throw new ConfigurationException("InodeTailSource: filegroups." + name + " is not set");
      }
      Path path = Paths.get(pattern);
      if (path.getParent() == null) {
        throw new ConfigurationException(
            "InodeTailSource: filegroups." + name + " must be a directory and a file name pattern");
      }
      Map<String, String> headers = new LinkedHashMap<>(context.getSubProperties("headers." + name + "."));
      groups.add(
          new Group(name, path.getParent(), Pattern.compile(path.getFileName().toString()), headers));
    }
    batchSize = context.getInteger("batchSize", 100);
    writePosIntervalMs = context.getLong("writePosInterval", 3000L);
    if (batchSize <= 0 || writePosIntervalMs <= 0) {
      throw new ConfigurationException("InodeTailSource needs batchSize > 0 and writePosInterval > 0");
    }
    fileHeaderKey =
        context.getBoolean("fileHeader", false) ? context.getString("fileHeaderKey", "file") : null;
    if (counter == null) {
      counter = new SourceCounter(getName());
    }
  }

  @Override
  public long getBatchSize() {
    return batchSize;
  }

  @Override
  protected void doStart() {
    loaded = false;
    try {
      saved = loadPositions(positionFile);
      loaded = true;
    } catch (IOException | IllegalArgumentException e) {
      throw new FlumeException(
          "InodeTailSource cannot load its position file " + positionFile + ": " + e.getMessage(),
          e);
    }
    tailed.clear();
    positionsWrittenAt = System.currentTimeMillis();
    counter.start();
    LOG.info("{}: started with {} saved positions", getName(), saved.size());
  }

  @Override
  protected void doStop() {
    try {
      writePositions();
    } catch (IOException e) {
      LOG.warn("{}: could not save its positions on stop", getName(), e);
    }
    counter.stop();
  }

  @Override
  protected Status doProcess() {
    int sent = 0;
    try {
      for (Tailed file : scan()) {
        while (!Thread.currentThread().isInterrupted()) {
          int n = sendBatch(file);
          sent += n;
          savePositionsIfDue();
          if (n < batchSize) {
            break;
          }
        }
      }
    } catch (ChannelException e) {
      // the channel is full: the batch's position did not advance; it is read again
      counter.incrementChannelWriteFail();
      LOG.warn("{}: the channel refused a batch ({}); retrying", getName(),
          e.getMessage());
      return Status.BACKOFF;
    } catch (IOException e) {
      counter.incrementEventReadFail();
      LOG.warn("{}: reading the spool failed ({}); retrying", getName(),
          e.toString());
      return Status.BACKOFF;
    }
    savePositionsIfDue();
    return sent > 0 ? Status.READY : Status.BACKOFF;
  }

  private void savePositionsIfDue() {
    if (System.currentTimeMillis() - positionsWrittenAt < writePosIntervalMs) {
      return;
    }
    try {
      writePositions();
    } catch (IOException e) {
      LOG.warn("{}: could not save its positions", getName(), e);
    }
  }

  /**
   * The files of every group, oldest change first, each known by its inode: a known inode under
   * a new name keeps its position when its first bytes are the same; files no longer there are
   * forgotten.
   */
  List<Tailed> scan() throws IOException {
    Set<Long> present = new HashSet<>();
    List<Tailed> found = new ArrayList<>();
    Map<Tailed, Long> modified = new HashMap<>();
    for (Group group : groups) {
      if (!Files.isDirectory(group.dir())) {
        continue;
      }
      try (DirectoryStream<Path> entries = Files.newDirectoryStream(group.dir())) {
        for (Path path : entries) {
          if (!group.fileName().matcher(path.getFileName().toString()).matches()) {
            continue;
          }
          long inode;
          long mtime;
          try {
            inode = (long) Files.getAttribute(path, "unix:ino");
            mtime = Files.getLastModifiedTime(path).toMillis();
          } catch (NoSuchFileException e) {
            continue; // renamed or removed meanwhile: the next scan sees it
          }
          if (!present.add(inode)) {
            continue;
          }
          Tailed file = track(inode, group, path.toAbsolutePath());
          if (file != null) {
            found.add(file);
            modified.put(file, mtime);
          }
        }
      }
    }
    // a directory listing can miss a file being renamed: forget one only when several missed it
    for (Iterator<Tailed> it = tailed.values().iterator(); it.hasNext(); ) {
      Tailed file = it.next();
      if (present.contains(file.inode)) {
        file.missed = 0;
      } else if (++file.missed >= FORGET_AFTER) {
        it.remove();
      }
    }
    saved.keySet().retainAll(present); // files not found: gone since (TAILDIR drops them too)
    found.sort(Comparator.comparingLong(modified::get));
    return found;
  }

  /**
   * The file of this inode, tracked from now on under this path; null when the name no longer
   * points to the inode (renamed again since the scan listed it): the next scan looks again.
   */
  private Tailed track(long inode, Group group, Path path) throws IOException {
    Tailed file = tailed.get(inode);
    if (file == null) {
      Saved entry = saved.get(inode);
      long pos = 0;
      String head = null;
      if (entry != null) {
        String now = headOf(path, inode, entry.pos());
        if (now == MOVED) {
          return null;
        }
        saved.remove(inode);
        boolean same = entry.head() != null ? entry.head().equals(now)
            : entry.file().equals(path.toString());
        if (same) {
          pos = entry.pos();
          head = now;
        }
      }
      file = new Tailed(inode, group, path, pos, head);
      LOG.info("{}: tailing {} (inode {}) from {}", getName(), path, inode, file.pos);
      tailed.put(inode, file);
    } else if (!file.path.equals(path)) {
      String now = headOf(path, inode, file.pos);
      if (now == MOVED) {
        return null;
      }
      if (file.head == null ? now != null : !file.head.equals(now)) {
        LOG.info("{}: {} reuses inode {} of a file gone since: read from its start",
            getName(), path, inode);
        file = new Tailed(inode, group, path, 0, null);
        tailed.put(inode, file);
      } else {
        LOG.info("{}: {} renamed to {}, read on from {}", getName(), file.path,
            path, file.pos);
        file.path = path;
      }
    }
    return file;
  }

  /**
   * Reads up to batchSize complete lines from the file's position and puts them in the channel
   * as one transaction; the position advances only after the put. Returns the lines sent.
   */
  int sendBatch(Tailed file) throws IOException {
    List<byte[]> lines = new ArrayList<>();
    long end;
    String head;
    try (FileChannel channel = FileChannel.open(file.path, StandardOpenOption.READ)) {
      // the name may point to another file since the scan (a rotation): read only our inode, and
      // take sizes and the head from this open file, never by name again
      if ((long) Files.getAttribute(file.path, "unix:ino") != file.inode) {
        return 0;
      }
      long size = channel.size();
      if (size < file.pos) {
        LOG.info("{}: {} is shorter than its position {}: truncated, read again from its start",
            getName(), file.path, file.pos);
        file.pos = 0;
        file.head = null;
      }
      if (size == file.pos) {
        return 0;
      }
      end = readLines(channel, file.pos, batchSize, lines);
      head = file.pos < HEAD_BYTES ? head(channel, end) : file.head;
    } catch (NoSuchFileException e) {
      return 0;
    }
    if (lines.isEmpty()) {
      return 0;
    }
    List<Event> events = new ArrayList<>(lines.size());
    for (byte[] line : lines) {
      Map<String, String> headers = new HashMap<>(file.group.headers());
      if (fileHeaderKey != null) {
        headers.put(fileHeaderKey, file.path.toString());
      }
      events.add(EventBuilder.withBody(line, headers));
    }
    counter.incrementAppendBatchReceivedCount();
    counter.addToEventReceivedCount(events.size());
    getChannelProcessor().processEventBatch(events);
    counter.incrementAppendBatchAcceptedCount();
    counter.addToEventAcceptedCount(events.size());
    file.pos = end;
    file.head = head;
    return events.size();
  }

  /**
   * Complete lines from {@code start}, at most {@code max}, added to {@code lines} without their
   * line end; returns the offset just after the last one (start when there is none).
   */
  static long readLines(FileChannel channel, long start, int max, List<byte[]> lines)
      throws IOException {
    ByteBuffer buffer = ByteBuffer.allocate(CHUNK_BYTES);
    ByteArrayOutputStream partial = new ByteArrayOutputStream();
    long at = start;
    long end = start;
    while (lines.size() < max) {
      buffer.clear();
      int n = channel.read(buffer, at);
      if (n <= 0) {
        break;
      }
      byte[] bytes = buffer.array();
      int from = 0;
      for (int i = 0; i < n && lines.size() < max; i++) {
        if (bytes[i] == '\n') {
          partial.write(bytes, from, i - from);
          byte[] line = partial.toByteArray();
          partial.reset();
          if (line.length > 0 && line[line.length - 1] == '\r') {
            line = Arrays.copyOf(line, line.length - 1);
          }
          lines.add(line);
          from = i + 1;
          end = at + i + 1;
        }
      }
      if (lines.size() >= max) {
        break;
      }
      partial.write(bytes, from, n - from);
      at += n;
    }
    return end;
  }

  /** CRC-32 (hex) of the file's first min(pos, HEAD_BYTES) bytes; null when pos is 0. */
  static String head(FileChannel channel, long pos) throws IOException {
    int n = (int) Math.min(pos, HEAD_BYTES);
    if (n == 0) {
      return null;
    }
    ByteBuffer buffer = ByteBuffer.allocate(n);
    while (buffer.hasRemaining() && channel.read(buffer, buffer.position()) > 0) {
      // read until full or end of file
    }
    if (buffer.hasRemaining()) {
      return "short"; // fewer bytes than were read before: not the same file
    }
    CRC32 crc = new CRC32();
    crc.update(buffer.array());
    return Long.toHexString(crc.getValue());
  }

  /** The head of the file named path if that still is the inode; MOVED when it is not. */
  private static String headOf(Path path, long inode, long pos) throws IOException {
    try (FileChannel channel = FileChannel.open(path, StandardOpenOption.READ)) {
      if ((long) Files.getAttribute(path, "unix:ino") != inode) {
        return MOVED;
      }
      return head(channel, pos);
    } catch (NoSuchFileException e) {
      return MOVED;
    }
  }

  /**
   * The position file's entries by inode: a JSON list of {inode, pos, file[, head]} (TAILDIR's
   * format, plus head). An empty or missing file is no positions; anything else that is not
   * such a list is refused.
   */
  static Map<Long, Saved> loadPositions(Path path) throws IOException {
    Map<Long, Saved> entries = new HashMap<>();
    if (!Files.exists(path)) {
      return entries;
    }
    String text = Files.readString(path, StandardCharsets.UTF_8);
    if (text.isBlank()) {
      return entries;
    }
    JsonElement doc;
    try {
      doc = JsonParser.parseString(text);
    } catch (JsonParseException e) {
      throw new IllegalArgumentException("not JSON");
    }
    if (!doc.isJsonArray()) {
      throw new IllegalArgumentException("not a JSON list");
    }
    for (JsonElement element : doc.getAsJsonArray()) {
      Saved entry = entry(element);
      if (entry == null) {
        throw new IllegalArgumentException("an entry is not {inode, pos, file[, head]}: " + element);
      }
      entries.put(entry.inode(), entry);
    }
    return entries;
  }

  private static Saved entry(JsonElement element) {
    if (!element.isJsonObject()) {
      return null;
    }
    JsonObject object = element.getAsJsonObject();
    Set<String> keys = object.keySet();
    if (!keys.containsAll(Set.of("inode", "pos", "file"))
        || !Set.of("inode", "pos", "file", "head").containsAll(keys)) {
      return null;
    }
    Long inode = natural(object.get("inode"));
    Long pos = natural(object.get("pos"));
    JsonElement file = object.get("file");
    JsonElement head = object.get("head");
    if (inode == null || pos == null || !isString(file) || (head != null && !isString(head))) {
      return null;
    }
    return new Saved(inode, pos, file.getAsString(), head == null ? null : head.getAsString());
  }

  private static boolean isString(JsonElement element) {
    return element.isJsonPrimitive() && element.getAsJsonPrimitive().isString();
  }

  private static Long natural(JsonElement element) {
    if (!element.isJsonPrimitive() || !element.getAsJsonPrimitive().isNumber()) {
      return null;
    }
    try {
      long value = element.getAsJsonPrimitive().getAsBigDecimal().longValueExact();
      return value >= 0 ? value : null;
    } catch (ArithmeticException e) {
      return null;
    }
  }

  /**
   * Saves every tailed file's position, and saved ones not seen yet, atomically (by rename). Only
   * the runner's thread calls it, and stop() once that thread has ended: no lock needed.
   */
  void writePositions() throws IOException {
    if (!loaded) {
      return;
    }
    JsonArray doc = new JsonArray();
    for (Tailed file : tailed.values()) {
      doc.add(json(file.inode, file.pos, file.path.toString(), file.head));
    }
    for (Saved entry : saved.values()) { // loaded, before the first scan
      doc.add(json(entry.inode(), entry.pos(), entry.file(), entry.head()));
    }
    Path tmp = positionFile.resolveSibling(positionFile.getFileName() + ".tmp");
    Files.createDirectories(positionFile.getParent());
    Files.writeString(tmp, new Gson().toJson(doc), StandardCharsets.UTF_8);
    Files.move(tmp, positionFile, StandardCopyOption.ATOMIC_MOVE,
        StandardCopyOption.REPLACE_EXISTING);
    positionsWrittenAt = System.currentTimeMillis();
  }

  private static JsonObject json(long inode, long pos, String file, String head) {
    JsonObject object = new JsonObject();
    object.add("inode", new JsonPrimitive(inode));
    object.add("pos", new JsonPrimitive(pos));
    object.add("file", new JsonPrimitive(file));
    if (head != null) {
      object.add("head", new JsonPrimitive(head));
    }
    return object;
  }

  Map<Long, Tailed> tailedFiles() {
    return tailed;
  }
}
