# frozen_string_literal: true

# Server-sent events with ActionController::Live. The stream sends one
# event, then waits until the client, having received it, calls #release
# (a separate request, maybe on another worker process: the signal is a
# file under tmp/). The second event can only arrive if the first one
# left the server on its own, not buffered with the rest of the response.
class EventsController < ApplicationController
  include ActionController::Live

  WAIT = 10 # seconds to wait for the release

  def show
    response.headers["Content-Type"] = "text/event-stream"
    response.headers["Cache-Control"] = "no-cache"
    sse = ActionController::Live::SSE.new(response.stream, event: "tick")
    sse.write({ n: 1 }, id: 1)
    released = wait_for_release(release_file)
    sse.write({ n: 2, released: released }, id: 2)
  ensure
    sse&.close
    File.delete(release_file) if release_file && File.exist?(release_file)
  end

  def release
    return head(:bad_request) unless release_file

    FileUtils.mkdir_p(release_file.dirname)
    FileUtils.touch(release_file)
    head :no_content
  end

  private

  def release_file
    token = params[:token].to_s
    Rails.root.join("tmp", "events", token) if token.match?(/\A\w{8,64}\z/)
  end

  def wait_for_release(path)
    return false unless path

    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + WAIT
    until File.exist?(path)
      return false if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.02
    end
    true
  end
end
