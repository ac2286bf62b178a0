package org.orderlake.flume;

import com.google.gson.JsonObject;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.flume.Context;
import org.apache.flume.Event;
import org.apache.flume.event.EventBuilder;
import org.apache.flume.interceptor.Interceptor;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Edge-side guard for tailed log lines.
 *
 * <p>Flume's Kafka sink retries a failed batch forever, so one line Kafka refuses wedges the whole
 * pipeline: a line larger than Kafka's maximum message size, or a line without a message key bound
 * for a compacted topic (Kafka refuses keyless records there). A line of invalid UTF-8 would
 * travel on as if it were an order, and a JSON object naming one field twice
 * ({@code {"user_id":1,"user_id":2}}) would be read by Spark's JSON reader as whichever value it
 * keeps: an ambiguous order must not count. This interceptor replaces such a line by a small JSON envelope
 * and routes it to a rejects topic through the {@code topic} header: the reason, the line's size
 * and SHA-256, the intended topic, the source file, and its first {@value #HEAD_BYTES} bytes in
 * base64 (the whole line when it is no longer). The envelope stays a few kilobytes whatever the
 * line, so it always fits in a Kafka record: a whole line of up to {@code maxBytes} in base64 grew
 * by a third and could itself be refused, wedging the pipeline it was meant to protect. Nothing is
 * dropped silently: every refused line is one record in the rejects topic and one WARN line in the
 * log. Place it after the interceptor that sets the {@code key} header.
 *
 * <pre>
 * a.sources.s.interceptors = key guard
 * a.sources.s.interceptors.guard.type = org.orderlake.flume.LineGuardInterceptor$Builder
 * a.sources.s.interceptors.guard.maxBytes = 1000000
 * a.sources.s.interceptors.guard.rejectTopic = tmall.rejects
 * a.sources.s.interceptors.guard.keyRequiredTopics = tmall.user_profiles
 * </pre>
 */
public final class LineGuardInterceptor implements Interceptor {
  private static final Logger LOG = LoggerFactory.getLogger(LineGuardInterceptor.class);
  static final int HEAD_BYTES = 1024;

  private final int maxBytes;
  private final String rejectTopic;
  private final String topicHeader;
  private final Set<String> keyRequiredTopics;
  private long rejected;

  LineGuardInterceptor(
      int maxBytes, String rejectTopic, String topicHeader, Set<String> keyRequiredTopics) {
    this.maxBytes = maxBytes;
    this.rejectTopic = rejectTopic;
    this.topicHeader = topicHeader;
    this.keyRequiredTopics = keyRequiredTopics;
  }

  @Override
  public void initialize() {}

  @Override
  public Event intercept(Event event) {
    byte[] body = event.getBody();
    Map<String, String> headers = event.getHeaders();
    String reason = null;
    String repeated = null;
    if (body.length > maxBytes) {
      reason = "oversize";
    } else if (!isUtf8(body)) {
      reason = "invalid_utf8";
    } else if (keyRequiredTopics.contains(headers.get(topicHeader)) && headers.get("key") == null) {
      reason = "missing_key";
    } else if ((repeated = repeatedKey(body)) != null) {
      reason = "duplicate_key";
    }
    if (reason == null) {
      return event;
    }
    rejected++;
    JsonObject envelope = new JsonObject();
    envelope.addProperty("reason", reason);
    envelope.addProperty("bytes", body.length);
    envelope.addProperty("topic", headers.get(topicHeader));
    envelope.addProperty("host", headers.get("host"));
    envelope.addProperty("file", headers.get("file"));
    envelope.addProperty("rejected_at_ms", System.currentTimeMillis());
    if (repeated != null) {
      envelope.addProperty("key_name", repeated);
    }
    int head = Math.min(HEAD_BYTES, body.length);
    envelope.addProperty("sha256", sha256(body));
    envelope.addProperty("head_base64", Base64.getEncoder().encodeToString(
        Arrays.copyOf(body, head)));
    envelope.addProperty("truncated", head < body.length);
    LOG.warn("Rejected line #{} ({}, {} bytes, file {}) -> {}",
        rejected, reason, body.length, headers.get("file"), rejectTopic);
    headers.put(topicHeader, rejectTopic);
    return EventBuilder.withBody(envelope.toString().getBytes(StandardCharsets.UTF_8), headers);
  }

  @Override
  public List<Event> intercept(List<Event> events) {
    List<Event> out = new ArrayList<>(events.size());
    for (Event e : events) {
      out.add(intercept(e));
    }
    return out;
  }

  @Override
  public void close() {}

  static String sha256(byte[] body) {
    try {
      return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(body));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("every Java runtime has SHA-256", e);
    }
  }

  /**
   * The first top-level key a JSON object line names twice, or null (also for a line that is not
   * an object: the parse downstream names that). One linear pass over the bytes, tracking string
   * and nesting state; keys compare as written (an escaped spelling of the same name is not
   * caught, and no producer here writes one).
   */
  static String repeatedKey(byte[] body) {
    int depth = 0;
    Set<String> keys = null;
    for (int i = 0; i < body.length; i++) {
      byte b = body[i];
      if (b == '"') {
        int start = i + 1;
        i = start;
        while (i < body.length && body[i] != '"') {
          i += body[i] == '\\' ? 2 : 1;
        }
        if (depth != 1) {
          continue;
        }
        int j = i + 1;
        while (j < body.length && (body[j] == ' ' || body[j] == '\t')) {
          j++;
        }
        if (j < body.length && body[j] == ':') {
          String key = new String(body, start, Math.min(i, body.length) - start,
              StandardCharsets.UTF_8);
          if (keys == null) {
            keys = new HashSet<>();
          }
          if (!keys.add(key)) {
            return key;
          }
        }
      } else if (b == '{' || b == '[') {
        depth++;
      } else if (b == '}' || b == ']') {
        depth--;
      }
    }
    return null;
  }

  static boolean isUtf8(byte[] body) {
    CharsetDecoder decoder = StandardCharsets.UTF_8.newDecoder()
        .onMalformedInput(CodingErrorAction.REPORT)
        .onUnmappableCharacter(CodingErrorAction.REPORT);
    try {
      decoder.decode(ByteBuffer.wrap(body));
      return true;
    } catch (CharacterCodingException e) {
      return false;
    }
  }

  /** Flume instantiates interceptors through a Builder named in the agent configuration. */
  public static final class Builder implements Interceptor.Builder {
    private int maxBytes;
    private String rejectTopic;
    private String topicHeader;
    private Set<String> keyRequiredTopics;

    @Override
    public void configure(Context context) {
      maxBytes = context.getInteger("maxBytes", 1_000_000);
      rejectTopic = context.getString("rejectTopic", "tmall.rejects");
      topicHeader = context.getString("topicHeader", "topic");
      keyRequiredTopics = new HashSet<>();
      for (String topic : context.getString("keyRequiredTopics", "").split(",")) {
        if (!topic.isBlank()) {
          keyRequiredTopics.add(topic.trim());
        }
      }
    }

    @Override
    public Interceptor build() {
      return new LineGuardInterceptor(maxBytes, rejectTopic, topicHeader, keyRequiredTopics);
    }
  }
}
